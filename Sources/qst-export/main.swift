import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTFormat
import QSTSide

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-export",
        abstract: "Export a trained side network as an adapter folder, or merge it into one self-contained .qst4.",
        discussion: """
            RUN is a qst-tune run folder (best/, final/, checkpoint-N/), an adapter folder or a side folder.

            Adapter (adapter_model.safetensors + adapter_config.json, tensor names of the reference PyTorch implementation, Formats/SIDE.md §7). The adapter records the base's identity, which qst-tune keeps in RUN/base.json; a bare side folder needs --base (given with a run, it is checked):
              qst-export run/ -o adapter/
              qst-export run/ -o adapter/ --dtype bf16 --checkpoint 250
              qst-export side/ -o adapter/ --base smollm2.qst4

            Merged container (the base's bytes copied unchanged, checksums re-verified, plus the side network in sections.side, Formats/QST4.md §9); every tool that takes a base and --side takes it alone:
              qst-export run/ --merge smollm2.qst4 -o tuned.qst4
              qst-generate tuned.qst4 --chat --prompt "Hello"
            """)

    @Argument(help: "A qst-tune run folder, an adapter folder or a side folder.") var source: String
    @Option(name: [.short, .customLong("output")], help: "Adapter folder, or the .qst4 file with --merge.") var output:
        String
    @Option(help: "Tensor type (default: an adapter's own, else f32).") var dtype: ExportDType?
    @Option(help: "Which weights of a run: best, last or a step number (default: best if the run has one, else last).")
    var checkpoint: String?
    @Option(help: "The base .qst4 container to merge the side network into.") var merge: String?
    @Option(help: "The base model the side network was trained on (.qst4 or safetensors folder), for its identity.")
    var base: String?
    @OptionGroup var format: OutputFormat

    struct Report: Encodable {
        var output: String
        var kind: String
        var from: String
        var origin: ExportOrigin
        var dtype: String
        var parameters: Int
        var bytes: Int
        var baseTensorDirectorySHA256: String?
    }

    func run() throws {
        let requested = dtype
        let choice = try checkpoint.map { try CheckpointChoice(parsing: $0) }
        if merge != nil, base != nil { throw QSTError.option("give the base once: --merge BASE.qst4 already names it") }
        let (folder, resolvedOrigin) = try ExportSource.resolve(source, choice: choice)
        let loaded = try AdapterIO.load(directory: folder)
        let weights = loaded.weights
        let origin = loaded.config?.origin ?? resolvedOrigin
        let exportType = requested ?? loaded.config?.dtype ?? .f32

        // The base identity: from the base given (checked against the adapter's, if any), else the adapter's.
        var identity = try loaded.config?.base ?? BaseIdentity.recorded(near: folder)
        var container: QST4Container?
        if let basePath = merge ?? base {
            let source: WeightSource
            if let merge {
                guard merge.hasSuffix(".qst4") else {
                    throw QSTError.option("--merge needs a .qst4 container (got '\(merge)')")
                }
                let c = try QST4Container(path: merge)
                container = c
                source = ContainerWeightSource(container: c)
            } else {
                source = try openWeightSource(path: basePath)
            }
            let actual = try BaseIdentity.of(source)
            let claimed =
                identity
                ?? BaseIdentity(
                    architecture: actual.architecture, modelType: actual.modelType,
                    dimensions: weights.config.base, tensorDirectorySHA256: nil)
            try claimed.check(base: actual, adapter: folder, baseOrigin: basePath)
            identity = actual
        }
        guard let identity else {
            throw QSTError.option(
                "\(folder) does not record its base model; pass --base MODEL.qst4 (the base it was trained on)")
        }
        let config = AdapterConfig(base: identity, side: weights.config, dtype: exportType, origin: origin)
        let kind: String
        let bytes: Int
        if let container {
            guard output.hasSuffix(".qst4") else {
                throw QSTError.option("-o must name a .qst4 file with --merge (got '\(output)')")
            }
            let bar =
                format.json ? nil : ProgressBar(total: container.header.tensors.count, label: "copy + verify base")
            try MergedContainer.write(base: container, weights: weights, adapter: config, output: output) { done, _ in
                bar?.update(done)
            }
            bar?.finish()
            kind = "merged"
            bytes = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        } else {
            try AdapterIO.save(weights, config: config, directory: output)
            kind = "adapter"
            bytes =
                (try FileManager.default.attributesOfItem(atPath: output + "/" + AdapterIO.weightsFileName)[.size]
                    as? Int) ?? 0
        }
        let report = Report(
            output: output, kind: kind, from: folder, origin: origin, dtype: exportType.rawValue,
            parameters: weights.parameterCount, bytes: bytes,
            baseTensorDirectorySHA256: identity.tensorDirectorySHA256)
        if format.json { try JSONOutput.print(report); return }
        let what =
            kind == "merged"
            ? "merged container \(output)"
            : "adapter \(output)/\(AdapterIO.weightsFileName) + \(AdapterIO.configFileName)"
        print("wrote \(what) (\(Units.bytes(bytes)))")
        print(
            "side network from \(folder) (\(origin.checkpoint)\(origin.step.map { ", step \($0)" } ?? "")): "
                + "\(weights.parameterCount) parameters as \(exportType.rawValue)")
        if let sha = identity.tensorDirectorySHA256 {
            print("base: \(identity.architecture), tensor directory sha256 \(sha)")
        } else {
            print("base: \(identity.architecture) (safetensors: dimensions only, no tensor directory hash)")
        }
    }
}

extension ExportDType: ExpressibleByArgument {}

ToolRunner.main(Export.self)

import ArgumentParser
import Foundation
import QSTCLI
import QSTCore
import QSTFormat

/// Writes a `.qst4` container of a model shape with random NF4 weights, tensor by tensor, without
/// ever holding a full-precision model: what memory and speed benchmarks at scale need.
struct Synthetic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-synthetic",
        abstract: "Write a .qst4 container with random NF4 weights for a model shape (benchmarks at scale).",
        discussion: """
            Shapes: \(SyntheticShape.all.map(\.name).joined(separator: ", ")).

            Linear weights are random NF4 codes with double-quantized absmax of a realistic size (weights of standard deviation ≈ 0.02); embeddings and head are random BF16; norms are 1. The tokenizer maps each byte to one token. Peak memory is one tensor.

            Examples:
              qst-synthetic llama-2-7b -o llama-2-7b.qst4
              qst-synthetic llama-2-70b -o /big/disk/llama-2-70b.qst4 --json
              qst-synthetic --list
            """)

    @Argument(help: "The model shape.") var shape: String?
    @Option(name: .shortAndLong, help: "Output .qst4 file.") var output: String?
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Flag(help: "List the shapes and their sizes.") var list = false
    @OptionGroup var format: OutputFormat

    struct Summary: Codable {
        var shape: String; var parameters: Int; var bytes: Int; var seconds: Double; var output: String
    }

    func run() throws {
        if list {
            for s in SyntheticShape.all {
                print(
                    String(
                        format: "%-14@ %6.2f B parameters, about %@ as NF4", s.name as NSString,
                        Double(s.parameterCount) / 1e9, Units.bytes(Int(Double(s.parameterCount) * 0.52))))
            }
            return
        }
        guard let name = shape, let s = SyntheticShape.all.first(where: { $0.name == name }) else {
            throw QSTError.option(
                "unknown or missing shape '\(shape ?? "")'; one of: \(SyntheticShape.all.map(\.name).joined(separator: ", "))"
            )
        }
        guard let output else { throw QSTError.option("missing -o/--output") }
        let start = Date()
        let writer = try QST4Writer(path: output)
        try writer.addFile(name: "config.json", data: try s.configJSON())
        let tok = try SyntheticTokenizer.json(vocab: s.vocab)
        try writer.addFile(name: "tokenizer.json", data: tok.tokenizer)
        try writer.addFile(name: "tokenizer_config.json", data: tok.config)
        let fill = RandomFill(seed: seed)
        try writer.writeDense(
            name: "model.embed_tokens.weight", dtype: .bf16, shape: [s.vocab, s.hidden],
            bytes: fill.bf16(count: s.vocab * s.hidden, stream: 1))
        let bar = ProgressBar(total: s.layers, label: "writing \(s.name)")
        let ones = [Float](repeating: 1, count: s.hidden)
        for i in 0..<s.layers {
            try writer.beginLayer(i)
            let p = "model.layers.\(i)."
            try ones.withUnsafeBytes {
                try writer.writeDense(name: p + "input_layernorm.weight", dtype: .f32, shape: [s.hidden], bytes: $0)
            }
            for (k, (tensor, shape)) in s.layerMatrices(i).enumerated() {
                if k == 4 {
                    try ones.withUnsafeBytes {
                        try writer.writeDense(
                            name: p + "post_attention_layernorm.weight", dtype: .f32, shape: [s.hidden], bytes: $0)
                    }
                }
                try writer.writeNF4(
                    name: tensor, shape: shape, fill.nf4(count: shape[0] * shape[1], stream: UInt64(1000 + i * 16 + k)))
            }
            bar.update(i + 1)
        }
        bar.finish()
        try writer.endLayer()
        try ones.withUnsafeBytes {
            try writer.writeDense(name: "model.norm.weight", dtype: .f32, shape: [s.hidden], bytes: $0)
        }
        if !s.tied {
            try writer.writeDense(
                name: "lm_head.weight", dtype: .bf16, shape: [s.vocab, s.hidden],
                bytes: fill.bf16(count: s.vocab * s.hidden, stream: 2))
        }
        try writer.finish(
            quantization: QST4Quantization(
                blockSize: 64, doubleQuant: true, dqBlockSize: 256, keptDtype: "bf16", keep: []),
            provenance: QST4Provenance(sources: []),
            createdBy: "qst-synthetic \(QSTVersion.string) (\(s.name), random weights)",
            createdAt: ReproducibleBuild.creationDate())
        let summary = Summary(
            shape: s.name, parameters: s.parameterCount, bytes: writer.bytesWritten,
            seconds: Date().timeIntervalSince(start), output: output)
        if format.json {
            try JSONOutput.print(summary)
        } else {
            print(
                "wrote \(output): \(s.name), \(summary.parameters) parameters, \(Units.bytes(summary.bytes)), \(String(format: "%.1f", summary.seconds)) s"
            )
        }
    }
}

ToolRunner.main(Synthetic.self)

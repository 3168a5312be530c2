import ArgumentParser
import Foundation
import QSTCLI
import QSTFormat

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-inspect",
        abstract: "Show what a .qst4 container holds, its quantization error and block statistics.",
        discussion: """
            Examples:
              qst-inspect smollm2.qst4                # architecture, provenance, tensors
              qst-inspect smollm2.qst4 --errors ~/models/SmolLM2   # error vs the original
              qst-inspect smollm2.qst4 --errors SRC --plot sqnr.svg   # per-layer SQNR chart
              qst-inspect smollm2.qst4 --blocks model.layers.0.mlp.up_proj.weight
              qst-inspect smollm2.qst4 --verify            # check every checksum
              qst-inspect smollm2.qst4 --json              # all of it as JSON
            """)

    @Argument(help: "The .qst4 container.")
    var container: String
    @Option(help: "The original safetensors file or model folder: report quantization error per tensor.")
    var errors: String?
    @Option(help: "Absmax distribution and code usage of one NF4 tensor.")
    var blocks: String?
    @Flag(help: "Verify every tensor checksum and embedded file hash.")
    var verify = false
    @Option(help: "With --errors: write a per-layer SQNR chart to this SVG file.")
    var plot: String?
    @Option(help: "Rows of the tensor and error tables to print (0 = all).")
    var top: Int = 0
    @OptionGroup var format: OutputFormat

    struct Report: Encodable {
        var summary: ContainerSummary
        var errors: [TensorErrorReport]?
        var layerErrors: [LayerErrorReport]?
        var blocks: BlockStatistics?
        var verification: [String]?
    }

    func run() throws {
        let c = try QST4Container(path: container)
        var report = Report(summary: try ContainerInspection.summary(c))
        if let src = errors {
            let checkpoint = try SafetensorsCheckpoint(path: src)
            let bar = ProgressBar(total: c.header.tensors.count, label: "comparing")
            report.errors = try ContainerInspection.errors(c, source: checkpoint) { d, _ in bar.update(d) }
            bar.finish()
            report.layerErrors = ContainerInspection.layerTotals(report.errors!)
            if let plot {
                let pts = report.layerErrors!.filter { $0.layer >= 0 }.map { (Double($0.layer), $0.sqnrDB) }
                try SVGChart(
                    title: "Quantization SQNR per layer — \((container as NSString).lastPathComponent)",
                    xLabel: "layer", yLabel: "SQNR (dB, higher is better)",
                    series: [.init(name: "SQNR of all tensors in the layer", points: pts, color: "#1f77b4")],
                    bars: true
                ).write(to: plot)
            }
        } else if plot != nil {
            throw QSTError.option("--plot needs --errors SOURCE")
        }
        if let t = blocks { report.blocks = try ContainerInspection.blocks(c, tensor: t) }
        if verify {
            let bar = ProgressBar(total: c.header.tensors.count, label: "verifying")
            report.verification = c.verify { d, _ in bar.update(d) }
            bar.finish()
        }
        if format.json { try JSONOutput.print(report) } else { printText(report) }
        if let v = report.verification, !v.isEmpty { throw ExitCode(2) }
    }

    func limited<T>(_ rows: [T]) -> ArraySlice<T> { top > 0 ? rows.prefix(top) : rows[...] }

    func printText(_ r: Report) {
        let s = r.summary
        func cfg(_ k: String) -> String {
            switch s.config[k] {
            case .number(let n)?: return n == n.rounded() ? String(Int(n)) : String(n)
            case .string(let t)?: return t
            case .bool(let b)?: return String(b)
            default: return "-"
            }
        }
        print("\(s.path)  (.qst4 \(s.formatVersion), \(Units.bytes(s.fileBytes)))")
        print(
            "  model        \(cfg("model_type"))  hidden \(cfg("hidden_size"))  layers \(cfg("num_hidden_layers"))  heads \(cfg("num_attention_heads"))/\(cfg("num_key_value_heads"))  mlp \(s.config["intermediate_size"] == nil ? cfg("ffn_dim") : cfg("intermediate_size"))  vocab \(cfg("vocab_size"))"
        )
        if let q = s.quantization {
            print(
                "  quantization \(q.method) block \(q.blockSize)  double-quant \(q.doubleQuant ? "on (block \(q.dqBlockSize))" : "off")  kept \(q.keptDtype)\(q.keep.isEmpty ? "" : "  keep \(q.keep)")"
            )
        }
        print("  created      \(s.createdAt) by \(s.createdBy)")
        for src in s.provenance.sources {
            print("  source       \(src.path)  \(Units.bytes(src.bytes))  sha256 \(src.sha256)")
        }
        print("  files        \(s.embeddedFiles.joined(separator: ", "))")
        print("")
        print(
            "  " + "tensor".padding(toLength: 48, withPad: " ", startingAt: 0)
                + "shape".padding(toLength: 16, withPad: " ", startingAt: 0) + "dtype  "
                + "bytes".padding(toLength: 12, withPad: " ", startingAt: 0) + "bits/w")
        for t in limited(s.tensors) {
            let shape = t.shape.map(String.init).joined(separator: "×")
            print(
                "  " + t.name.padding(toLength: 48, withPad: " ", startingAt: 0)
                    + shape.padding(toLength: 16, withPad: " ", startingAt: 0)
                    + t.dtype.padding(toLength: 7, withPad: " ", startingAt: 0)
                    + Units.bytes(t.bytes).padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: "%.3f", t.bitsPerWeight))
        }
        print(
            String(
                format: "  total: %ld tensors, %ld parameters (%ld NF4), %@, %.3f bits/weight",
                s.tensors.count, s.totalParameters, s.nf4Parameters, Units.bytes(s.totalTensorBytes), s.bitsPerWeight))
        if let errs = r.errors {
            print("\n  quantization error, worst first:")
            print(
                "  " + "tensor".padding(toLength: 48, withPad: " ", startingAt: 0)
                    + "SQNR dB   rel.Frob    MSE         max|err|")
            for e in limited(errs) {
                let st = e.statistics
                print(
                    "  " + e.name.padding(toLength: 48, withPad: " ", startingAt: 0)
                        + String(
                            format: "%7.2f   %.3e   %.3e   %.3e", st.sqnrDB.isFinite ? st.sqnrDB : 999,
                            st.relativeFrobenius, st.mse, st.maxAbsError))
            }
            print("\n  per layer:")
            for l in r.layerErrors ?? [] {
                print(
                    String(
                        format: "  layer %3ld   SQNR %6.2f dB   rel.Frob %.3e   MSE %.3e", l.layer, l.sqnrDB,
                        l.relativeFrobenius, l.mse))
            }
        }
        if let b = r.blocks {
            print("\n  blocks of \(b.tensor): \(b.blocks) × \(b.blockSize)")
            print(
                String(
                    format: "  absmax min %.4g  median %.4g  p99 %.4g  max %.4g;  %.2f%% of blocks over 4× the median",
                    b.absmaxMin, b.absmaxMedian, b.absmaxP99, b.absmaxMax, 100 * b.fractionOver4xMedian))
            let total = max(1, b.codeHistogram.reduce(0, +))
            for (i, n) in b.codeHistogram.enumerated() {
                let bar = String(repeating: "▇", count: Int(60 * Double(n) / Double(b.codeHistogram.max() ?? 1)))
                print(
                    String(format: "  code %2ld %+.4f %6.2f%% ", i, NF4.codeValues[i], 100 * Double(n) / Double(total))
                        + bar)
            }
        }
        if let v = r.verification {
            print(
                v.isEmpty
                    ? "\n  verify: all \(s.tensors.count) tensor checksums and \(s.embeddedFiles.count) file hashes OK"
                    : "\n  verify: \(v.count) FAILED")
            for line in v { print("  " + line) }
        }
    }
}

ToolRunner.main(Inspect.self)

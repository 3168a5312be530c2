import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTEngineCLI
import QSTFormat
import QSTSide

/// `qst-eval states`: the frozen model's hidden states of a GLUE file, for linear probes — how much of
/// a task the frozen features hold for a classifier that only reads them (BENCHMARKS.md §39 sets QST and
/// LoRA against it). Writes Formats/STATES.md's three .npy arrays.
struct StatesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "states",
        abstract: "Write the frozen model's per-layer hidden states of a GLUE file as .npy arrays (for linear probes).",
        discussion: """
            OUT/last.npy    float32 [n, layers + 2, hidden]: at each prompt's last token, the embeddings,
                            every layer's output, then the final norm's output (what the LM head reads)
            OUT/mean.npy    float32 [n, layers + 1, hidden]: the embeddings and every layer's output,
                            averaged over the prompt's tokens
            OUT/labels.npy  int32 [n]: the class index of each example, in file order

            Examples:
              qst-eval states smollm2.qst4 --task sst2 --data sst2/dev.tsv --out states-dev
              qst-eval states smollm2.qst4 --task sst2 --data sst2/train.tsv --limit 10000 \\
                  --out states-train --json
              Scripts/bench-probe      # linear probes on these arrays against the tuned methods
            """)
    @OptionGroup var base: ModelArgument
    @OptionGroup var file: GLUEFileArguments
    @Option(name: .customLong("out"), help: "Folder for last.npy, mean.npy and labels.npy (created).") var out: String
    @Option(help: "Sequences per forward.") var batch: Int = 32
    // Chunks keep memory at one chunk's states however long the file is; sorting within one keeps padding low.
    @Option(help: "Examples read, sorted by length and written together (one chunk's states are held in memory).")
    var chunk: Int = 1024
    @OptionGroup var format: OutputFormat
    @OptionGroup var engine: EngineArguments

    struct Report: Encodable {
        var task: String
        var data: String
        var examples: Int
        var skippedBad: Int
        var layers: Int
        var hidden: Int
        var tokens: Int
        var files: [String]
        var seconds: Double
        var peakRSS: Int
    }

    func run() throws {
        guard batch >= 1, chunk >= 1 else { throw QSTError.option("--batch and --chunk must be ≥ 1") }
        let glue = try file.glueTask()
        let model = try FrozenModel(path: base.model, options: try engine.options())
        let loaded = try file.load(glue, tokenizer: try model.source.loadTokenizer(), head: true)
        let examples = loaded.examples
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let n = examples.count, L = model.layerCount, d = model.hiddenSize
        let files = ["last.npy", "mean.npy", "labels.npy"].map { out + "/" + $0 }
        let last = try NPYFile.Writer(path: files[0], type: .float32, shape: [n, L + 2, d])
        let mean = try NPYFile.Writer(path: files[1], type: .float32, shape: [n, L + 1, d])
        let labels = try NPYFile.Writer(path: files[2], type: .int32, shape: [n])
        let start = Date()
        let bar = ProgressBar(total: n, label: "states")
        for first in stride(from: 0, to: n, by: chunk) {
            let ids = Array(first..<min(first + chunk, n))
            let (lastRows, meanRows) = try states(of: ids.map { examples[$0].ids }, model: model) {
                bar.update(first + $0)
            }
            try last.append(lastRows)
            try mean.append(meanRows)
        }
        bar.finish()
        try labels.append(examples.map { Int32($0.classLabel ?? -1) })
        try NPYFile.Writer.commitAll([last, mean, labels])
        let report = Report(
            task: glue.name, data: file.data, examples: n, skippedBad: loaded.skippedBad, layers: L, hidden: d,
            tokens: examples.reduce(0) { $0 + $1.ids.count }, files: files,
            seconds: Date().timeIntervalSince(start), peakRSS: MemoryStats.current().peakRSS)
        if format.json { try JSONOutput.print(report); return }
        print(
            "\(n) examples (\(report.tokens) tokens), \(L) layers × \(d): \(files.joined(separator: ", ")); "
                + String(format: "%.1f s, peak RSS ", report.seconds) + Units.bytes(report.peakRSS))
    }

    /// The last-token rows `[m, L + 2, d]` and token means `[m, L + 1, d]` of `sequences`, in their order.
    func states(
        of sequences: [[Int32]], model: FrozenModel, progress: (Int) -> Void
    ) throws -> ([Float], [Float]) {
        let m = sequences.count, L = model.layerCount, d = model.hiddenSize
        var last = [Float](repeating: 0, count: m * (L + 2) * d)
        var mean = [Float](repeating: 0, count: m * (L + 1) * d)
        let order = sequences.indices.sorted { sequences[$0].count < sequences[$1].count }
        var done = 0
        for s in stride(from: 0, to: m, by: batch) {
            let members = Array(order[s..<min(s + batch, m)])
            let tokens = TokenBatch(sequences: members.map { sequences[$0] })
            let T = tokens.seqLen
            let normed = try model.forwardHiddenStates(tokens) { v, h in
                for (b, e) in members.enumerated() {
                    let len = tokens.lengths[b], row = h + b * T * d
                    let at = (e * (L + 2) + v) * d, lastRow = row + (len - 1) * d
                    for j in 0..<d { last[at + j] = lastRow[j] }
                    // Sums in Double: the mean of a long prompt keeps float32's precision.
                    var sum = [Double](repeating: 0, count: d)
                    for t in 0..<len { for j in 0..<d { sum[j] += Double(row[t * d + j]) } }
                    let base = (e * (L + 1) + v) * d
                    for j in 0..<d { mean[base + j] = Float(sum[j] / Double(len)) }
                }
            }
            for (b, e) in members.enumerated() {
                let at = (b * T + tokens.lengths[b] - 1) * d, base = (e * (L + 2) + L + 1) * d
                for j in 0..<d { last[base + j] = normed[at + j] }
            }
            done += members.count
            progress(done)
        }
        return (last, mean)
    }
}

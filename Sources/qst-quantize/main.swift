import ArgumentParser
import Foundation
import QSTCLI
import QSTFormat

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-quantize",
        abstract: "Quantize a safetensors checkpoint into a memory-mapped NF4 container (.qst4).",
        discussion: """
        Every 2-D weight of the transformer layers becomes NF4 (bitsandbytes-compatible, \
        double-quantized scales); embeddings and the LM head are kept in --dtype, norms and \
        biases in F32. The config and tokenizer files beside the weights are embedded.

        Examples:
          qst-quantize ~/models/SmolLM2-135M-Instruct smollm2.qst4
          qst-quantize model.safetensors out.qst4 --config config.json --block-size 128
          qst-quantize MODEL_DIR full.qst4 --keep '.*' --dtype f32     (no quantization at all)
          qst-quantize MODEL_DIR out.qst4 --json > summary.json
        """)

    @Argument(help: "A .safetensors file, a sharded index.json, or a Hugging Face model folder.")
    var input: String
    @Argument(help: "The .qst4 file to write (written atomically).")
    var output: String
    @Option(help: "config.json to embed when INPUT is a bare file.")
    var config: String?
    @Option(help: "NF4 block size: a power of two from 32 to 4096.")
    var blockSize: Int = 64
    @Flag(help: "Store per-block absmax as F32 instead of double-quantizing it.")
    var noDoubleQuant = false
    @Option(help: "Keep tensors whose name matches this regular expression unquantized (repeatable).")
    var keep: [String] = []
    @Flag(help: "Quantize the embeddings and LM head too.")
    var quantizeEmbeddings = false
    @Option(help: "dtype of kept matrices (embeddings, LM head, --keep): bf16, f16 or f32.")
    var dtype: String = "bf16"
    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        var policy = QuantizationPolicy()
        policy.nf4.blockSize = blockSize
        policy.nf4.doubleQuant = !noDoubleQuant
        policy.keepPatterns = keep
        policy.quantizeEmbeddings = quantizeEmbeddings
        guard let d = DType(rawValue: dtype.uppercased()), [.bf16, .f16, .f32].contains(d) else {
            throw CommandError("--dtype must be bf16, f16 or f32 (got '\(dtype)')")
        }
        policy.keptDtype = d
        let job = QST4Quantize(source: input, output: output, policy: policy, configPath: config,
                               createdBy: "qst-quantize \(QSTVersion.string)",
                               createdAt: ReproducibleBuild.creationDate())
        var bar: ProgressBar?
        let start = Date()
        let summary = try job.run { done, total, bytes in
            if bar == nil { bar = ProgressBar(total: total, label: "quantizing") }
            let mbs = Double(bytes) / 1e6 / max(Date().timeIntervalSince(start), 1e-6)
            bar?.update(done, detail: String(format: "tensors  %@  %.0f MB/s", Units.bytes(bytes), mbs))
        }
        bar?.finish()
        if json { try JSONOutput.print(summary); return }
        print("wrote \(summary.output)")
        print("  tensors          \(summary.tensors) (\(summary.quantizedTensors) NF4)")
        print("  input            \(Units.bytes(summary.inputBytes))")
        print("  output           \(Units.bytes(summary.outputBytes))")
        print(String(format: "  bits per weight  %.3f NF4, %.2f overall", summary.bitsPerWeightQuantized, summary.bitsPerWeightOverall))
        print(String(format: "  mean SQNR        %.2f dB", summary.meanSQNRDB))
        print(String(format: "  time             %.2f s (%.0f MB/s of input)", summary.seconds, summary.inputMBPerSecond))
    }
}

ToolRunner.main(Quantize.self)

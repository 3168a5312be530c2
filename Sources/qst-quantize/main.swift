import ArgumentParser
import Foundation
import QSTCLI
import QSTEngine
import QSTFormat

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-quantize",
        abstract: "Quantize a safetensors checkpoint into a memory-mapped NF4 container (.qst4).",
        discussion: """
            Every 2-D weight of the transformer layers becomes NF4 (bitsandbytes-compatible, double-quantized scales); embeddings and the LM head are kept in --dtype, norms and biases in F32. The config and tokenizer files beside the weights are embedded.

            --search and --calibrate keep the NF4 format: only the choice of each block's scale (and codes) changes, so every NF4 reader decodes the file unchanged (Formats/NF4.md §6, §7). --calibrate first runs the text through the model (INPUT itself, or --calibrate-with) to measure each linear's input channels. --method gptq (with --calibrate) chooses the codes column by column with GPTQ's error compensation through each linear's input Gram matrix; --method search (default) searches each block's scale on its own. GPTQ runs sequentially by default: the calibration goes block by block through the model whose earlier linears are already quantized, each linear fitted to the full-precision model's outputs (asymmetric target), then each row's block scales are re-solved for the final codes (Formats/NF4.md §7).

            Examples:
              qst-quantize ~/models/SmolLM2-135M-Instruct smollm2.qst4
              qst-quantize model.safetensors out.qst4 --config config.json --block-size 128
              qst-quantize MODEL_DIR full.qst4 --keep '.*' --dtype f32   # not quantized
              qst-quantize MODEL_DIR out.qst4 --json > summary.json
              # block scales by least squared error, then weighted by activations:
              qst-quantize MODEL_DIR out.qst4 --search
              qst-quantize MODEL_DIR out.qst4 --calibrate calib.txt
              qst-quantize MODEL_DIR out.qst4 --calibrate calib.txt \\
                  --calibrate-with plain.qst4
              # GPTQ in the NF4 grid (error-compensating codes), blocks of 32:
              qst-quantize MODEL_DIR out.qst4 --calibrate calib.txt --method gptq
              qst-quantize MODEL_DIR out.qst4 --calibrate calib.txt --method gptq \\
                  --block-size 32 --calibrate-tokens 32768 --gptq-damp 0.1 \\
                  --no-gptq-act-order
              # session 6's GPTQ (all Gram matrices from the full-precision model):
              qst-quantize MODEL_DIR out.qst4 --calibrate calib.txt --method gptq \\
                  --no-gptq-sequential --gptq-refit-passes 0 --gptq-damp 0.01
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
    @Option(help: "dtype of kept matrices (embeddings, LM head, --keep).")
    var dtype: KeptDType = .bf16
    @Flag(help: "Choose each NF4 block's scale by least squared error instead of the absmax (same format).")
    var search = false
    @Option(help: "Calibration text: weight the scale search by each input channel's mean squared activation on it.")
    var calibrate: String?
    @Option(
        help:
            "How --calibrate chooses scales and codes: search (per-block weighted scale search) or gptq (GPTQ error compensation through each linear's input Gram matrix)."
    )
    var method: MethodArgument = .search
    @Option(
        help:
            "GPTQ dampening: λ as a fraction of the mean diagonal of the Gram matrix (GPTQ's H + λI, the scale refit's and, unless --gptq-target-damp, the asymmetric target's ridge)."
    )
    var gptqDamp: Double = 0.2
    @Flag(
        inversion: .prefixedNo,
        help:
            "GPTQ: quantize the input channels in order of decreasing activation (act-order); --no-gptq-act-order keeps index order."
    )
    var gptqActOrder = true
    @Flag(
        inversion: .prefixedNo,
        help:
            "GPTQ: collect each linear's Gram matrix from the model whose earlier linears are already quantized (true sequential; only when the calibration runs through INPUT, not with --calibrate-with)."
    )
    var gptqSequential = true
    @Option(
        help:
            "GPTQ: coordinate passes re-solving each row's block scales for the final codes (output error weighted by the Gram matrix); 0 = none."
    )
    var gptqRefitPasses = 8
    @Flag(
        inversion: .prefixedNo,
        help:
            "GPTQ (sequential only): fit each linear, on the quantized model's inputs, to the full-precision model's outputs (asymmetric target; runs both models)."
    )
    var gptqAsymmetric = true
    @Option(
        help:
            "GPTQ asymmetric target: ridge λ toward the original weights, as a fraction of the Gram matrix's mean diagonal (default: --gptq-damp)."
    )
    var gptqTargetDamp: Double?
    @Option(help: "Model that runs the calibration text (.qst4 or safetensors; default: INPUT).")
    var calibrateWith: String?
    @Option(
        help:
            "Calibrate on at most this many tokens of the text (default 4096; 16384 with --method gptq, which fits a full Gram matrix per linear and overfits fewer tokens)."
    )
    var calibrateTokens: Int?
    var tokenLimit: Int { calibrateTokens ?? (method == .gptq ? 16384 : 4096) }
    @Option(help: "Calibration window length in tokens.")
    var calibrateCtx: Int = 512
    @Option(
        help:
            "Also write the calibration's importance (mean squared input per channel, one F32 vector per linear) to this .safetensors file."
    )
    var saveImportance: String?
    @OptionGroup var format: OutputFormat

    /// The summary's fields, plus the search method and the calibration when there was one.
    struct Report: Encodable {
        var summary: QuantizationSummary
        var scaleSearch: String?
        var calibration: CalibrationReport?
        enum Keys: String, CodingKey { case scaleSearch, calibration }
        func encode(to encoder: Encoder) throws {
            try summary.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encodeIfPresent(scaleSearch, forKey: .scaleSearch)
            try c.encodeIfPresent(calibration, forKey: .calibration)
        }
    }

    struct CalibrationReport: Encodable {
        var text: String, sha256: String, model: String, tokens: Int, ctx: Int, linears: Int, seconds: Double
    }

    var gptqSettings: NF4GPTQ.Settings {
        var gptq = NF4GPTQ.Settings()
        gptq.damp = gptqDamp
        gptq.actOrder = gptqActOrder
        gptq.refitPasses = gptqRefitPasses
        return gptq
    }

    /// Reads and tokenizes the calibration text and runs it through the model; one-line errors name the file.
    func calibration(policy: QuantizationPolicy) throws -> (NF4Calibration, CalibrationReport)? {
        guard let path = calibrate else { return nil }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
            let data = FileManager.default.contents(atPath: path)
        else {
            throw QSTError("\(path): cannot read the calibration text", kind: .unreadableFile)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw QSTError("\(path): the calibration text is not UTF-8", kind: .invalidTextEncoding)
        }
        guard gptqDamp > 0, gptqDamp.isFinite else { throw QSTError.option("--gptq-damp must be a positive number") }
        if let t = gptqTargetDamp, !(t > 0 && t.isFinite) {
            throw QSTError.option("--gptq-target-damp must be a positive number")
        }
        guard gptqRefitPasses >= 0 else { throw QSTError.option("--gptq-refit-passes must be ≥ 0") }
        guard tokenLimit >= 1, calibrateCtx >= 2 else {
            throw QSTError.option("--calibrate-tokens must be ≥ 1 and --calibrate-ctx ≥ 2")
        }
        let modelPath = calibrateWith ?? input
        let model = try FrozenModel(path: modelPath, options: EngineOptions(matmulPath: .kernelsAuto))
        var ids = try model.source.loadTokenizer().encode(text).map(Int32.init)
        guard ids.count >= 2 else {
            throw QSTError(
                "\(path): the calibration text has \(ids.count) token(s); at least 2 are needed", kind: .notEnoughData)
        }
        if ids.count > tokenLimit { ids = Array(ids.prefix(tokenLimit)) }
        var bar: ProgressBar?
        let c: NF4Calibration
        if method == .gptq && gptqSequential && calibrateWith == nil {
            let settings = gptqSettings
            let quantize = { (name: String, w: UnsafeBufferPointer<Float>, rows: Int, cols: Int, gram: [Float]) in
                guard policy.decide(name: name, shape: [rows, cols]) == .nf4, cols % policy.nf4.blockSize == 0
                else { return NF4Tensor?.none }
                return try NF4GPTQ.quantize(
                    w, rows: rows, cols: cols, gram: gram, parameters: policy.nf4, settings: settings,
                    file: input, tensor: name)
            }
            c = try SequentialGPTQ.run(
                model: model, tokens: ids, ctx: calibrateCtx, textSHA256: Checksums.sha256Hex(data),
                asymmetricDamp: gptqAsymmetric ? (gptqTargetDamp ?? gptqDamp) : nil, quantize: quantize
            ) { p in
                if bar == nil { bar = ProgressBar(total: p.layers, label: "calibrating+GPTQ") }
                bar?.update(p.layer, detail: "layer \(p.layer)/\(p.layers)")
            }
        } else {
            c = try ImportanceMatrix.collect(
                model: model, tokens: ids, ctx: calibrateCtx,
                textSHA256: Checksums.sha256Hex(data), gram: method == .gptq
            ) { p in
                if bar == nil { bar = ProgressBar(total: p.totalWindows, label: "calibrating") }
                bar?.update(p.windows, detail: "\(p.tokens) tokens")
            }
        }
        bar?.finish()
        if let out = saveImportance {
            let tensors = try c.channels.keys.sorted().map { name in
                try SafetensorsTensorData(name: name, shape: [c.channels[name]!.count], floats: c.channels[name]!)
            }
            try SafetensorsWriter.write(
                to: out, tensors: tensors,
                metadata: [
                    "calibration_sha256": c.textSHA256,
                    "tokens": "\(c.tokens)", "ctx": "\(c.ctx)",
                ])
        }
        return (
            c,
            CalibrationReport(
                text: path, sha256: c.textSHA256, model: modelPath, tokens: c.tokens, ctx: c.ctx,
                linears: c.channels.count, seconds: c.seconds)
        )
    }

    func run() throws {
        var policy = QuantizationPolicy()
        policy.nf4.blockSize = blockSize
        policy.nf4.doubleQuant = !noDoubleQuant
        policy.keepPatterns = keep
        policy.quantizeEmbeddings = quantizeEmbeddings
        policy.keptDtype = dtype.dtype
        let job = QST4Quantize(
            source: input, output: output, policy: policy, configPath: config,
            createdBy: "qst-quantize \(QSTVersion.string)",
            createdAt: ReproducibleBuild.creationDate())
        var job2 = job
        if method == .gptq && calibrate == nil { throw QSTError.option("--method gptq needs --calibrate TEXT") }
        let calibrated = try calibration(policy: policy)
        if search || calibrated != nil {
            job2.scaleSearch = NF4ScaleSearchRequest(
                calibration: calibrated?.0, method: method.method, gptq: gptqSettings)
        }
        var bar: ProgressBar?
        let start = Date()
        let summary = try job2.run { done, total, bytes in
            if bar == nil { bar = ProgressBar(total: total, label: "quantizing") }
            let mbs = Double(bytes) / 1e6 / max(Date().timeIntervalSince(start), 1e-6)
            bar?.update(done, detail: String(format: "tensors  %@  %.0f MB/s", Units.bytes(bytes), mbs))
        }
        bar?.finish()
        let methodName = job2.scaleSearch?.containerMethod
        if format.json {
            try JSONOutput.print(Report(summary: summary, scaleSearch: methodName, calibration: calibrated?.1)); return
        }
        print("wrote \(summary.output)")
        if let c = calibrated?.1 {
            print(
                String(
                    format: "  calibration      %ld tokens of %@ through %@, %ld linears, %.2f s", c.tokens, c.text,
                    c.model, c.linears, c.seconds))
        }
        if let methodName { print("  scale search     \(methodName)") }
        print("  tensors          \(summary.tensors) (\(summary.quantizedTensors) NF4)")
        print("  input            \(Units.bytes(summary.inputBytes))")
        print("  output           \(Units.bytes(summary.outputBytes))")
        print(
            String(
                format: "  bits per weight  %.3f NF4, %.2f overall", summary.bitsPerWeightQuantized,
                summary.bitsPerWeightOverall))
        print(String(format: "  mean SQNR        %.2f dB", summary.meanSQNRDB))
        print(
            String(format: "  time             %.2f s (%.0f MB/s of input)", summary.seconds, summary.inputMBPerSecond))
    }
}

/// `--method`: how calibrated NF4 chooses scales and codes.
enum MethodArgument: String, CaseIterable, ExpressibleByArgument {
    case search, gptq
    var method: NF4CalibrationMethod { self == .gptq ? .gptq : .search }
}

/// The types `--dtype` offers for kept (unquantized) matrices; the name is case-insensitive (`BF16` works too).
enum KeptDType: String, CaseIterable, ExpressibleByArgument {
    case bf16, f16, f32
    init?(argument: String) { self.init(rawValue: argument.lowercased()) }
    var dtype: DType {
        switch self {
        case .bf16: return .bf16
        case .f16: return .f16
        case .f32: return .f32
        }
    }
}

// Only the calibration runs the model (and with it BLAS). Plain quantization never calls BLAS: it needs
// neither the re-execution that picks OpenBLAS's kernel nor OpenBLAS's idle worker threads, which would
// spin on the two cores the hash and the quantizer use.
let calibrating = CommandLine.arguments.contains { $0 == "--calibrate" || $0.hasPrefix("--calibrate=") }
if !calibrating { EngineThreads.stopBLASWorkers() }
ToolRunner.main(Quantize.self, usesBLAS: calibrating)

import Foundation
import QSTCore

/// One tensor's line in the quantization report.
public struct TensorQuantizationReport: Codable, Sendable {
    public var name: String
    public var shape: [Int]
    public var dtype: String
    public var inputBytes: Int
    public var outputBytes: Int
    public var bitsPerWeight: Double
    public var sqnrDB: Double?
}

public struct QuantizationSummary: Codable, Sendable {
    public var output: String
    public var tensors: Int
    public var quantizedTensors: Int
    public var inputBytes: Int
    public var outputBytes: Int
    public var bitsPerWeightQuantized: Double
    public var bitsPerWeightOverall: Double
    public var meanSQNRDB: Double
    public var seconds: Double
    public var inputMBPerSecond: Double
    public var report: [TensorQuantizationReport]
}

/// Converts a safetensors checkpoint (file or Hugging Face folder) into a `.qst4`
/// container, one tensor at a time: memory stays bounded by the largest tensor.
public struct QST4Quantize {
    public var source: String
    public var output: String
    public var policy: QuantizationPolicy
    /// config.json to embed when the source is a bare file; tokenizer files are taken from its folder.
    public var configPath: String?
    public var createdBy: String
    /// Recorded creation time (tools pass SOURCE_DATE_EPOCH when set, for reproducible files).
    public var createdAt: Date
    /// When set, NF4 block scales are searched (weighted by the calibration, if any) instead of the absmax.
    public var scaleSearch: NF4ScaleSearchRequest?

    public init(
        source: String, output: String, policy: QuantizationPolicy, configPath: String? = nil,
        createdBy: String, createdAt: Date = Date()
    ) {
        self.source = source; self.output = output; self.policy = policy
        self.configPath = configPath; self.createdBy = createdBy; self.createdAt = createdAt
    }

    static let embeddedFileNames = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]

    /// `progress(doneTensors, totalTensors, inputBytesDone)`.
    public func run(progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> QuantizationSummary {
        try policy.validate()
        let start = Date()
        let checkpoint = try SafetensorsCheckpoint(path: source)
        let sideFolder: String?
        if let c = configPath {
            sideFolder = (c as NSString).deletingLastPathComponent
        } else {
            sideFolder = checkpoint.directory
        }
        var extraFiles: [(String, String)] = []  // (name in container, path)
        if let c = configPath {
            guard FileManager.default.fileExists(atPath: c) else { throw QSTError.file(c, "config file not found") }
            extraFiles.append(("config.json", c))
        }
        if let dir = sideFolder {
            for name in Self.embeddedFileNames where !extraFiles.contains(where: { $0.0 == name }) {
                let p = (dir as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: p) { extraFiles.append((name, p)) }
            }
        }
        guard extraFiles.contains(where: { $0.0 == "config.json" }) else {
            throw QSTError.file(source, "no config.json beside the weights; pass --config")
        }

        // Hashing the sources is the longest single job; it runs beside the quantization.
        let pages = checkpoint.files.map { SharedPageRelease($0) }
        let hashing = SourceHashing(mapped: pages, paths: extraFiles.map(\.1))
        let writer = try QST4Writer(path: output)
        for (name, path) in extraFiles {
            try writer.addFile(name: name, data: try Data(contentsOf: URL(fileURLWithPath: path)))
        }
        let names = ModelTensorOrder.sorted(checkpoint.names)
        var report: [TensorQuantizationReport] = []
        var inputDone = 0
        var currentLayer: Int?
        for (i, name) in names.enumerated() {
            let info = try checkpoint.requireInfo(name)
            let layer = ModelTensorOrder.layerIndex(of: name)
            if layer != currentLayer {
                if let l = layer { try writer.beginLayer(l) } else { try writer.endLayer() }
                currentLayer = layer
            }
            // While the sources are being hashed, that thread has one core: the tensor loops stay on this
            // one (three busy threads on two cores would slow the hash, the longest job); then all cores.
            let threads = hashing.isFinished ? 0 : 1
            let file = checkpoint.file(for: name)!
            report.append(try convert(name: name, info: info, file: file, writer: writer, threads: threads))
            pages.first { $0.file === file.mapped }?.quantizerFinished(name)
            inputDone += info.byteCount
            progress(i + 1, names.count, inputDone)
        }
        var quantization = QST4Quantization(
            blockSize: policy.nf4.blockSize, doubleQuant: policy.nf4.doubleQuant,
            dqBlockSize: policy.nf4.dqBlockSize,
            keptDtype: policy.keptDtype.rawValue.lowercased(), keep: policy.keepPatterns)
        if let search = scaleSearch {
            quantization.scaleSearch = search.containerMethod
            if let c = search.calibration {
                quantization.calibration = QST4CalibrationInfo(sha256: c.textSHA256, tokens: c.tokens, ctx: c.ctx)
            }
        }
        try writer.finish(
            quantization: quantization, provenance: QST4Provenance(sources: try hashing.wait()), createdBy: createdBy,
            createdAt: createdAt)
        let seconds = Date().timeIntervalSince(start)
        let outBytes = (try FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
        let q = report.filter { $0.dtype == "NF4" }
        let qElems = q.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let qBytes = q.reduce(0) { $0 + $1.outputBytes }
        let allElems = report.reduce(0) { $0 + $1.shape.reduce(1, *) }
        let allBytes = report.reduce(0) { $0 + $1.outputBytes }
        let sq = q.compactMap(\.sqnrDB).filter(\.isFinite)
        return QuantizationSummary(
            output: output, tensors: report.count, quantizedTensors: q.count, inputBytes: inputDone,
            outputBytes: outBytes,
            bitsPerWeightQuantized: qElems > 0 ? Double(qBytes * 8) / Double(qElems) : 0,
            bitsPerWeightOverall: allElems > 0 ? Double(allBytes * 8) / Double(allElems) : 0,
            meanSQNRDB: sq.isEmpty ? 0 : sq.reduce(0, +) / Double(sq.count), seconds: seconds,
            inputMBPerSecond: Double(inputDone) / 1e6 / max(seconds, 1e-9), report: report)
    }

    /// `threads`: 1 keeps the work on the calling thread, 0 lets it use every core.
    private func convert(
        name: String, info: SafetensorsTensorInfo, file: SafetensorsFile,
        writer: QST4Writer, threads: Int
    ) throws -> TensorQuantizationReport {
        let n = info.elementCount
        let decision = policy.decide(name: name, shape: info.shape)
        if case .dense(let dtype) = decision, dtype == info.dtype {
            // Kept in its own dtype: copied byte for byte, never widened.
            let raw = try file.rawBytes(name)
            try writer.writeDense(name: name, dtype: dtype, shape: info.shape, bytes: raw)
            return TensorQuantizationReport(
                name: name, shape: info.shape, dtype: dtype.rawValue, inputBytes: info.byteCount,
                outputBytes: raw.count, bitsPerWeight: Double(raw.count * 8) / Double(max(n, 1)),
                sqnrDB: nil)
        }
        // F32 sources are used in place; other dtypes are converted into one temporary buffer.
        var owned: [Float] = []
        let values: UnsafeBufferPointer<Float>
        if info.dtype == .f32 {
            values = try file.f32Buffer(name)
        } else {
            guard info.dtype.isFloat else {
                throw QSTError.tensor(
                    file.path, name, "dtype \(info.dtype.rawValue) cannot be quantized or stored as float")
            }
            owned = try file.floats(name)
            values = owned.withUnsafeBufferPointer { $0 }
        }
        return try withExtendedLifetime(owned) {
            switch decision {
            case .nf4:
                let t: NF4Tensor
                if let search = scaleSearch {
                    let rowLength = info.shape.count == 2 ? info.shape[1] : max(n, 1)
                    var importance = search.calibration?.weights(for: name)
                    if importance?.count != rowLength { importance = nil }  // no calibration for this tensor
                    if let done = search.calibration?.quantized[name], done.count == n {
                        t = done
                        try writer.writeNF4(
                            name: name, shape: info.shape, t, scaleSearch: "gptq",
                            calibrationSHA256: search.calibration?.textSHA256)
                    } else if search.method == .gptq, info.shape.count == 2, rowLength % policy.nf4.blockSize == 0,
                        let gram = search.calibration?.gram(for: name), gram.count == rowLength * rowLength
                    {
                        t = try NF4GPTQ.quantize(
                            values, rows: info.shape[0], cols: rowLength, gram: gram,
                            parameters: policy.nf4, settings: search.gptq, file: file.path, tensor: name)
                        try writer.writeNF4(
                            name: name, shape: info.shape, t, scaleSearch: "gptq",
                            calibrationSHA256: search.calibration?.textSHA256)
                    } else {
                        t = try NF4ScaleSearch.quantize(
                            values, parameters: policy.nf4, importance: importance,
                            rowLength: rowLength, settings: search.settings,
                            file: file.path, tensor: name)
                        try writer.writeNF4(
                            name: name, shape: info.shape, t, scaleSearch: search.method(weighted: importance != nil),
                            calibrationSHA256: importance != nil ? search.calibration?.textSHA256 : nil)
                    }
                } else {
                    t = try NF4.quantize(
                        values, parameters: policy.nf4, file: file.path, tensor: name, kernel: .auto,
                        threads: threads)
                    try writer.writeNF4(name: name, shape: info.shape, t)
                }
                let outBytes = t.codes.count + 4 * t.absmax.count + t.absmaxCodes.count + 4 * t.absmax2.count
                return TensorQuantizationReport(
                    name: name, shape: info.shape, dtype: "NF4", inputBytes: info.byteCount,
                    outputBytes: outBytes, bitsPerWeight: Double(outBytes * 8) / Double(max(n, 1)),
                    sqnrDB: QuantizationError.sqnr(
                        original: values, tensor: t,
                        threads: threads > 0 ? threads : Parallel.defaultThreads))
            case .dense(let dtype):
                var outBytes = 0
                if dtype == .f32 {
                    try writer.writeDense(
                        name: name, dtype: .f32, shape: info.shape, bytes: UnsafeRawBufferPointer(values))
                    outBytes = 4 * n
                } else {
                    // Converted a piece at a time into one small buffer (below FloatConversion's parallel
                    // threshold, so on this thread): no full-size 16-bit copy to allocate and fault in.
                    try writer.writeDense(name: name, dtype: dtype, shape: info.shape, byteCount: 2 * n) {
                        piece, offset in
                        let src = values.baseAddress! + offset / 2, count = piece.count / 2
                        let dst = piece.baseAddress!.assumingMemoryBound(to: UInt16.self)
                        if dtype == .bf16 {
                            FloatConversion.f32ToBF16(src, dst, count)
                        } else {
                            FloatConversion.f32ToF16(src, dst, count)
                        }
                    }
                    outBytes = 2 * n
                }
                return TensorQuantizationReport(
                    name: name, shape: info.shape, dtype: dtype.rawValue, inputBytes: info.byteCount,
                    outputBytes: outBytes, bitsPerWeight: Double(outBytes * 8) / Double(max(n, 1)),
                    sqnrDB: nil)
            }
        }
    }
}

import Foundation
import QSTCore

/// What `qst-inspect` reports, computed from a container (and, for errors, the source weights).
public struct TensorSummary: Codable, Sendable {
    public var name: String
    public var shape: [Int]
    public var dtype: String
    public var layer: Int
    public var bytes: Int
    public var bitsPerWeight: Double
}

public struct ContainerSummary: Codable, Sendable {
    public var path: String
    public var fileBytes: Int
    public var formatVersion: String
    public var createdBy: String
    public var createdAt: String
    public var config: [String: JSONAny]
    public var quantization: QST4Quantization?
    public var provenance: QST4Provenance
    public var embeddedFiles: [String]
    public var tensors: [TensorSummary]
    public var totalParameters: Int
    public var totalTensorBytes: Int
    public var nf4Parameters: Int
    public var bitsPerWeight: Double
}

public struct TensorErrorReport: Codable, Sendable {
    public var name: String
    public var layer: Int
    public var dtype: String
    public var statistics: ErrorStatistics
}

public struct LayerErrorReport: Codable, Sendable {
    public var layer: Int
    public var mse: Double
    public var relativeFrobenius: Double
    public var sqnrDB: Double
}

public struct BlockStatistics: Codable, Sendable {
    public var tensor: String
    public var blocks: Int
    public var blockSize: Int
    public var absmaxMin: Float
    public var absmaxMedian: Float
    public var absmaxP99: Float
    public var absmaxMax: Float
    public var fractionOver4xMedian: Double
    public var codeHistogram: [Int]
}

public enum ContainerInspection {
    public static func summary(_ c: QST4Container) throws -> ContainerSummary {
        var config: [String: JSONAny] = [:]
        if let data = try c.embeddedFile("config.json") {
            config = (try? JSONDecoder().decode([String: JSONAny].self, from: data)) ?? [:]
        }
        let tensors = c.header.tensors.map { e -> TensorSummary in
            let bytes = e.parts.values.reduce(0) { $0 + $1.length }
            return TensorSummary(
                name: e.name, shape: e.shape, dtype: e.dtype.rawValue, layer: e.layer, bytes: bytes,
                bitsPerWeight: Double(bytes * 8) / Double(max(1, e.elementCount)))
        }
        let params = c.header.tensors.reduce(0) { $0 + $1.elementCount }
        let bytes = tensors.reduce(0) { $0 + $1.bytes }
        let nf4 = c.header.tensors.filter { $0.dtype == .nf4 }.reduce(0) { $0 + $1.elementCount }
        return ContainerSummary(
            path: c.path, fileBytes: c.file.size, formatVersion: "\(QST4.majorVersion).\(c.minorVersion)",
            createdBy: c.header.createdBy, createdAt: c.header.createdAt, config: config,
            quantization: c.header.quantization, provenance: c.header.provenance,
            embeddedFiles: c.header.files.map(\.name), tensors: tensors, totalParameters: params,
            totalTensorBytes: bytes, nf4Parameters: nf4,
            bitsPerWeight: Double(bytes * 8) / Double(max(1, params)))
    }

    /// Per-tensor error of every tensor against the original weights, worst (lowest SQNR) first.
    public static func errors(
        _ c: QST4Container, source: SafetensorsCheckpoint,
        progress: (Int, Int) -> Void = { _, _ in }
    ) throws -> [TensorErrorReport] {
        var out: [TensorErrorReport] = []
        for (i, e) in c.header.tensors.enumerated() {
            guard let info = source.info(e.name) else {
                throw QSTError.tensor(source.path, e.name, "in the container but not in the source")
            }
            guard info.shape == e.shape else {
                throw QSTError.tensor(
                    source.path, e.name, "shape \(info.shape) differs from the container's \(e.shape)")
            }
            let original = try source.floats(e.name)
            let decoded = try c.floats(e.name)
            let s = original.withUnsafeBufferPointer { o in
                decoded.withUnsafeBufferPointer { ErrorStatistics.compute(original: o, reconstructed: $0) }
            }
            out.append(TensorErrorReport(name: e.name, layer: e.layer, dtype: e.dtype.rawValue, statistics: s))
            try? source.file(for: e.name)?.advise(e.name, willNeed: false)
            progress(i + 1, c.header.tensors.count)
        }
        return out.sorted { $0.statistics.sqnrDB < $1.statistics.sqnrDB }
    }

    public static func layerTotals(_ reports: [TensorErrorReport]) -> [LayerErrorReport] {
        Dictionary(grouping: reports, by: \.layer).map { layer, rs in
            let err = rs.reduce(0.0) { $0 + $1.statistics.mse * Double($1.statistics.count) }
            let sig = rs.reduce(0.0) { $0 + $1.statistics.signalPower }
            let n = rs.reduce(0) { $0 + $1.statistics.count }
            return LayerErrorReport(
                layer: layer, mse: err / Double(max(n, 1)),
                relativeFrobenius: sig > 0 ? (err / sig).squareRoot() : 0,
                sqnrDB: err > 0 ? 10 * log10(sig / err) : 999)
        }.sorted { $0.layer < $1.layer }
    }

    public static func blocks(_ c: QST4Container, tensor name: String) throws -> BlockStatistics {
        let e = try c.entry(name)
        guard e.dtype == .nf4 else {
            throw QSTError.tensor(c.path, name, "is \(e.dtype.rawValue), not NF4: it has no blocks")
        }
        let absmax = c.absmax(e)
        let sorted = absmax.sorted()
        func q(_ p: Double) -> Float { sorted[min(sorted.count - 1, Int(p * Double(sorted.count - 1) + 0.5))] }
        let median = q(0.5)
        var hist = [Int](repeating: 0, count: 16)
        let codes = c.pointer(e.parts["codes"]!).assumingMemoryBound(to: UInt8.self)
        let n = e.elementCount
        for j in 0..<(n / 2) { hist[Int(codes[j] >> 4)] += 1; hist[Int(codes[j] & 15)] += 1 }
        if n % 2 == 1 { hist[Int(codes[n / 2] >> 4)] += 1 }
        let over = absmax.filter { $0 > 4 * median }.count
        return BlockStatistics(
            tensor: name, blocks: absmax.count, blockSize: e.blockSize!, absmaxMin: sorted.first ?? 0,
            absmaxMedian: median, absmaxP99: q(0.99), absmaxMax: sorted.last ?? 0,
            fractionOver4xMedian: Double(over) / Double(max(1, absmax.count)), codeHistogram: hist)
    }
}

public enum QSTVersion {
    public static let string = "0.1.0"
}

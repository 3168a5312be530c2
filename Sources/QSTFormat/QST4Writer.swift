import Foundation

/// Streams a `.qst4` file tensor by tensor (Formats/QST4.md). Nothing but the
/// directory is kept in memory; the header is written last and the preamble patched.
/// The file appears at its path only when `finish` succeeds.
public final class QST4Writer {
    public let path: String
    public let alignment: Int
    private let out: AtomicFileWriter
    private var files: [QST4File] = []
    private var tensors: [QST4TensorEntry] = []
    private var layers: [QST4Layer] = []
    private var names = Set<String>()
    private var openLayer: (index: Int, offset: Int)?

    public init(path: String, alignment: Int = 4096) throws {
        self.path = path
        self.alignment = alignment
        out = try AtomicFileWriter(path: path)
        try out.write([UInt8](repeating: 0, count: QST4.preambleSize))
        try out.pad(to: alignment)
    }

    public var bytesWritten: Int { out.bytesWritten }
    public var dataOffset: Int { alignment }

    /// Embeds a file (config.json, tokenizer files), zstd-compressed unless tiny gains nothing.
    public func addFile(name: String, data: Data, compress: Bool = true) throws {
        precondition(tensors.isEmpty, "files precede tensors")
        let stored = compress ? try Zstd.compress(data) : data
        try out.pad(to: QST4.partAlignment)
        let offset = out.bytesWritten
        try out.write(stored)
        files.append(
            QST4File(
                name: name, offset: offset, length: stored.count, rawLength: data.count,
                compression: compress ? "zstd" : "none", sha256: Checksums.sha256Hex(data)))
    }

    /// Tensors of layer `index` follow, starting on an `alignment` boundary.
    public func beginLayer(_ index: Int) throws {
        try endLayer()
        try out.pad(to: alignment)
        openLayer = (index, out.bytesWritten)
    }

    /// Closes the current layer's range; later tensors belong to no layer.
    public func endLayer() throws {
        guard let l = openLayer else { return }
        layers.append(QST4Layer(index: l.index, offset: l.offset, length: out.bytesWritten - l.offset))
        openLayer = nil
        try out.pad(to: alignment)
    }

    private func writePart(_ bytes: UnsafeRawBufferPointer, crc: inout UInt32) throws -> ByteRange {
        try out.pad(to: QST4.partAlignment)
        let offset = out.bytesWritten
        try out.write(bytes)
        crc = Checksums.crc32c(bytes, continuing: crc)
        return ByteRange(offset: offset, length: bytes.count)
    }

    private func register(_ entry: QST4TensorEntry) throws {
        guard names.insert(entry.name).inserted else {
            throw QSTError.tensor(path, entry.name, "written twice")
        }
        tensors.append(entry)
    }

    /// `scaleSearch`/`calibrationSHA256`: the optional metadata of a tensor whose scales were searched.
    public func writeNF4(
        name: String, shape: [Int], _ t: NF4Tensor, scaleSearch: String? = nil,
        calibrationSHA256: String? = nil
    ) throws {
        var crc: UInt32 = 0
        var parts: [String: ByteRange] = [:]
        parts["codes"] = try t.codes.withUnsafeBytes { try writePart($0, crc: &crc) }
        let dq = !t.absmaxCodes.isEmpty
        if dq {
            parts["absmax_codes"] = try t.absmaxCodes.withUnsafeBytes { try writePart($0, crc: &crc) }
            parts["absmax2"] = try t.absmax2.withUnsafeBytes { try writePart($0, crc: &crc) }
        } else {
            parts["absmax"] = try t.absmax.withUnsafeBytes { try writePart($0, crc: &crc) }
        }
        try register(
            QST4TensorEntry(
                name: name, dtype: .nf4, shape: shape, layer: openLayer?.index ?? -1, crc32c: crc, parts: parts,
                blockSize: t.blockSize, doubleQuant: dq, dqBlockSize: dq ? t.dqBlockSize : nil,
                dqOffsetBits: dq ? t.absmaxOffset.bitPattern : nil, scaleSearch: scaleSearch,
                calibrationSHA256: calibrationSHA256))
    }

    /// Writes an F32, F16 or BF16 tensor whose bytes are already in that dtype.
    public func writeDense(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        precondition([.f32, .f16, .bf16].contains(dtype))
        var crc: UInt32 = 0
        let range = try writePart(bytes, crc: &crc)
        try register(
            QST4TensorEntry(
                name: name, dtype: dtype, shape: shape, layer: openLayer?.index ?? -1,
                crc32c: crc, parts: ["data": range]))
    }

    /// Writes an F32, F16 or BF16 tensor of `byteCount` bytes made piece by piece, so that no full-size
    /// copy is ever held: `fill(piece, offset)` puts the tensor's bytes from `offset` into `piece` (at most
    /// `pieceBytes` long; a reused buffer, so the bytes are still in cache when they are written).
    public func writeDense(
        name: String, dtype: DType, shape: [Int], byteCount: Int, pieceBytes: Int = 256 << 10,
        fill: (UnsafeMutableRawBufferPointer, Int) throws -> Void
    ) throws {
        precondition([.f32, .f16, .bf16].contains(dtype) && pieceBytes > 0)
        try out.pad(to: QST4.partAlignment)
        let offset = out.bytesWritten
        let buffer = UnsafeMutableRawBufferPointer.allocate(
            byteCount: min(pieceBytes, max(byteCount, 1)), alignment: 64)
        defer { buffer.deallocate() }
        var crc: UInt32 = 0, done = 0
        while done < byteCount {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, byteCount - done)])
            try fill(piece, done)
            let bytes = UnsafeRawBufferPointer(piece)
            try out.write(bytes)
            crc = Checksums.crc32c(bytes, continuing: crc)
            done += piece.count
        }
        try register(
            QST4TensorEntry(
                name: name, dtype: dtype, shape: shape, layer: openLayer?.index ?? -1,
                crc32c: crc, parts: ["data": ByteRange(offset: offset, length: byteCount)]))
    }

    /// Writes the header, fills in the preamble, fsyncs and moves the file into place.
    public func finish(
        quantization: QST4Quantization?, provenance: QST4Provenance, createdBy: String,
        sections: [String: JSONAny] = [:], createdAt: Date = Date()
    ) throws {
        try endLayer()
        try out.pad(to: QST4.partAlignment)
        let formatter = ISO8601DateFormatter()
        let header = QST4Header(
            createdBy: createdBy, createdAt: formatter.string(from: createdAt),
            quantization: quantization, provenance: provenance, files: files,
            layers: layers, tensors: tensors, sections: sections)
        try QST4.finish(
            out, header: header, minorVersion: QST4.minorVersion, alignment: alignment, dataOffset: alignment)
    }
}

extension QST4 {
    /// The end of every container write: the header JSON after the data, then the preamble (which points
    /// at it and carries its CRC-32C) patched in at offset 0, then the atomic commit.
    static func finish(
        _ out: AtomicFileWriter, header: QST4Header, minorVersion: UInt16, alignment: Int,
        dataOffset: Int
    ) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = try encoder.encode(header)
        let headerOffset = out.bytesWritten
        try out.write(json)
        var preamble = QST4.magic
        preamble.appendLE(QST4.majorVersion)
        preamble.appendLE(minorVersion)
        preamble.appendLE(UInt32(alignment))
        preamble.appendLE(UInt64(dataOffset))
        preamble.appendLE(UInt64(headerOffset))
        preamble.appendLE(UInt64(json.count))
        preamble.appendLE(json.withUnsafeBytes { Checksums.crc32c($0) })
        preamble += [UInt8](repeating: 0, count: QST4.preambleSize - preamble.count)
        try out.patch(at: 0, preamble)
        try out.commit()
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}

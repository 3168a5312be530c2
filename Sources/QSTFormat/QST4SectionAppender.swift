import Foundation

/// Writes a copy of a `.qst4` container with extra data sections (Formats/QST4.md §9): the base's bytes
/// up to its header are copied unchanged — every tensor's CRC-32C and every embedded file's SHA-256
/// re-checked on the way — then each section's tensors follow, starting on an `alignment` boundary, then
/// the base's header with the new `sections` members. The tensor directory is untouched, so the copy's
/// `directorySHA256()` equals the base's. Nothing depends on the clock: the same inputs give the same bytes.
public final class QST4SectionAppender {
    /// The minor version that introduced data sections.
    public static let sectionsMinorVersion = 1
    public let base: QST4Container
    public let path: String
    private let out: AtomicFileWriter
    private var sections: [String: (start: Int, tensors: [QST4SectionTensor])] = [:]
    private var order: [String] = []
    private var open: String?
    private var copied = false

    public init(base: QST4Container, output: String) throws {
        guard URL(fileURLWithPath: output).standardizedFileURL != URL(fileURLWithPath: base.path).standardizedFileURL
        else {
            throw QSTError.file(output, "the output would overwrite the base container")
        }
        self.base = base
        path = output
        out = try AtomicFileWriter(path: output)
    }

    /// Copies the base's preamble and data section, verifying checksums while copying.
    /// `progress(done, total)` counts tensors.
    public func copyBase(progress: ((Int, Int) -> Void)? = nil) throws {
        precondition(!copied, "copyBase runs once")
        for f in base.header.files {
            guard let data = try base.embeddedFile(f.name), Checksums.sha256Hex(data) == f.sha256 else {
                throw QSTError.file(base.path, "file '\(f.name)': sha256 mismatch; the base container is corrupt")
            }
        }
        // Tensors in file order, so the copy advances through the file once.
        let tensors = base.header.tensors.sorted {
            ($0.parts.values.map(\.offset).min() ?? 0) < ($1.parts.values.map(\.offset).min() ?? 0)
        }
        var position = 0
        for (i, e) in tensors.enumerated() {
            let end = e.parts.values.map { $0.offset + $0.length }.max() ?? position
            if end > position { try copy(position..<end); position = end }
            var crc: UInt32 = 0
            for p in e.orderedPartNames {
                let r = e.parts[p]!
                crc = Checksums.crc32c(UnsafeRawBufferPointer(start: base.pointer(r), count: r.length), continuing: crc)
            }
            guard crc == e.crc32c else {
                throw QSTError.tensor(
                    base.path, e.name,
                    "checksum mismatch while copying (stored \(String(e.crc32c, radix: 16)), "
                        + "computed \(String(crc, radix: 16))); the base container is corrupt")
            }
            progress?(i + 1, tensors.count)
        }
        // Base sections with data of their own would be left pointing at bytes we do not interpret.
        if position < base.headerOffset { try copy(position..<base.headerOffset) }
        copied = true
    }

    private func copy(_ range: Range<Int>) throws {
        var s = range.lowerBound
        let chunk = 8 << 20
        while s < range.upperBound {
            let n = min(chunk, range.upperBound - s)
            try out.write(UnsafeRawBufferPointer(start: base.file.base + s, count: n))
            s += n
        }
    }

    /// Starts a section; its tensors follow. Names already in the base are refused.
    public func beginSection(_ name: String) throws {
        precondition(copied, "copyBase first")
        guard base.header.sections[name] == nil else {
            throw QSTError.file(
                base.path, "already has a section '\(name)'; attach to the plain base container instead")
        }
        guard sections[name] == nil else { throw QSTError.file(path, "section '\(name)' written twice") }
        try out.pad(to: base.alignment)
        sections[name] = (out.bytesWritten, [])
        order.append(name)
        open = name
    }

    /// Appends one tensor (F32, F16 or BF16 bytes in row-major order) to the open section.
    public func addTensor(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) throws {
        guard let s = open, var entry = sections[s] else { preconditionFailure("beginSection first") }
        guard !entry.tensors.contains(where: { $0.name == name }) else {
            throw QSTError.tensor(path, name, "written twice in section '\(s)'")
        }
        guard [.f32, .f16, .bf16].contains(dtype), let size = dtype.byteSize,
            shape.reduce(1, *) * size == bytes.count
        else {
            throw QSTError.tensor(path, name, "\(bytes.count) bytes do not hold shape \(shape) of \(dtype.rawValue)")
        }
        try out.pad(to: QST4.partAlignment)
        let offset = out.bytesWritten
        try out.write(bytes)
        entry.tensors.append(
            QST4SectionTensor(
                name: name, dtype: dtype, shape: shape, offset: offset,
                length: bytes.count, crc32c: Checksums.crc32c(bytes)))
        sections[s] = entry
    }

    /// Writes the header — the base's, plus each section with `fields[name]` and its data and tensor
    /// entries — fills in the preamble, fsyncs and moves the file into place.
    public func finish(fields: [String: [String: JSONAny]]) throws {
        precondition(copied, "copyBase first")
        var header = base.header
        for name in order {
            guard let s = sections[name] else { continue }
            let end = s.tensors.map { $0.offset + $0.length }.max() ?? s.start
            let section = QST4DataSection(
                name: name, data: ByteRange(offset: s.start, length: end - s.start),
                tensors: s.tensors, fields: fields[name] ?? [:])
            header.sections[name] = try section.json()
        }
        try out.pad(to: QST4.partAlignment)
        // Version 1.1 adds data sections (§9); 1.0 readers still open the file and ignore them.
        try QST4.finish(
            out, header: header, minorVersion: UInt16(max(base.minorVersion, Self.sectionsMinorVersion)),
            alignment: base.alignment, dataOffset: base.dataOffset)
    }
}

import Foundation

/// Structural checks of a `.qst4` directory (Formats/QST4.md §6), run on open.
enum QST4Validation {
    static func validate(header: QST4Header, path: String, dataRange: Range<Int>, alignment: Int) throws {
        var spans: [(Range<Int>, String)] = []
        for f in header.files {
            guard f.offset >= 0, f.length >= 0, f.offset <= dataRange.upperBound - f.length,
                f.offset >= dataRange.lowerBound
            else {
                throw QSTError.file(path, "file '\(f.name)': byte range outside the data section", kind: .invalidOffset)
            }
            spans.append((f.offset..<(f.offset + f.length), "file '\(f.name)'"))
        }
        for t in header.tensors {
            func fail(_ what: String, _ kind: QSTError.Kind = .invalidTensorInfo) -> QSTError {
                QSTError.tensor(path, t.name, what, kind: kind)
            }
            var n = 1
            for d in t.shape {
                guard d >= 0 else { throw fail("negative dimension in shape \(t.shape)") }
                let (p, o) = n.multipliedReportingOverflow(by: d)
                guard !o else { throw fail("shape \(t.shape) overflows", .validationOverflow) }
                n = p
            }
            // Every part is smaller than the file, so a count that needs more bytes than fit is corrupt.
            guard n <= Int.max / 8 else { throw fail("shape \(t.shape) overflows", .validationOverflow) }
            var expected: [String: Int] = [:]
            switch t.dtype {
            case .f32: expected["data"] = n * 4
            case .f16, .bf16: expected["data"] = n * 2
            case .nf4:
                guard let b = t.blockSize, b >= 32, b <= 4096, b & (b - 1) == 0 else {
                    throw fail(
                        "NF4 block size \(t.blockSize.map(String.init) ?? "missing") is not a power of two in 32...4096"
                    )
                }
                let blocks = (n + b - 1) / b
                expected["codes"] = (n + 1) / 2
                if t.doubleQuant == true {
                    guard let dq = t.dqBlockSize, dq > 0, dq <= 1 << 20, t.dqOffsetBits != nil else {
                        throw fail(
                            "double quantization without a dq_block_size in 1...1048576 or without dq_offset_bits")
                    }
                    expected["absmax_codes"] = blocks
                    expected["absmax2"] = 4 * ((blocks + dq - 1) / dq)
                } else {
                    expected["absmax"] = 4 * blocks
                }
            default:
                throw fail("dtype \(t.dtype.rawValue) is not allowed in a .qst4 container")
            }
            guard Set(t.parts.keys) == Set(expected.keys) else {
                throw fail(
                    "parts \(t.parts.keys.sorted()) do not match dtype \(t.dtype.rawValue) (expected \(expected.keys.sorted()))"
                )
            }
            for (name, len) in expected {
                let r = t.parts[name]!
                guard r.length == len else {
                    throw fail(
                        "part '\(name)' is \(r.length) bytes, expected \(len) for shape \(t.shape)", .invalidOffset)
                }
                guard r.offset % QST4.partAlignment == 0 else {
                    throw fail("part '\(name)' offset \(r.offset) is not 64-byte aligned", .misalignedData)
                }
                guard r.offset >= dataRange.lowerBound, r.offset <= dataRange.upperBound - r.length else {
                    throw fail("part '\(name)' lies outside the data section", .invalidOffset)
                }
                spans.append((r.offset..<(r.offset + r.length), "tensor '\(t.name)' part '\(name)'"))
            }
        }
        spans.sort { $0.0.lowerBound < $1.0.lowerBound }
        for i in spans.indices.dropFirst() where spans[i].0.lowerBound < spans[i - 1].0.upperBound {
            throw QSTError.file(path, "\(spans[i].1) overlaps \(spans[i - 1].1)", kind: .invalidOffset)
        }
        for l in header.layers {
            guard l.length >= 0, l.offset % alignment == 0, l.offset >= dataRange.lowerBound,
                l.offset <= dataRange.upperBound - l.length
            else {
                throw QSTError.file(
                    path, "layer \(l.index): range is not aligned or lies outside the data section",
                    kind: .invalidOffset)
            }
            for t in header.tensors where t.layer == l.index {
                for (p, r) in t.parts where r.offset < l.offset || r.offset + r.length > l.offset + l.length {
                    throw QSTError.tensor(
                        path, t.name, "part '\(p)' lies outside layer \(l.index)'s range", kind: .invalidOffset)
                }
            }
        }
    }
}

/// GPT-2's reversible map between bytes and printable Unicode scalars: printable Latin-1 bytes map
/// to themselves, the other 68 bytes to U+0100 onwards, so every byte string is a visible string.
public enum ByteLevelAlphabet {
    public static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// Inverse of `byteToScalar`, indexed by scalar value (all values are below 324).
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 324)
        for (b, s) in byteToScalar.enumerated() { table[Int(s.value)] = Int16(b) }
        return table
    }()

    static func encode(_ scalars: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(scalars.count)
        for s in scalars {
            if s.value < 0x80 {
                out.append(byteToScalar[Int(s.value)])
            } else {
                for b in String(s).utf8 { out.append(byteToScalar[Int(b)]) }
            }
        }
        return out
    }

    /// The bytes a token stands for, or nil if it holds a scalar outside the alphabet.
    static func decode(_ token: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        for s in token.unicodeScalars {
            guard s.value < 324, scalarToByte[Int(s.value)] >= 0 else { return nil }
            bytes.append(UInt8(scalarToByte[Int(s.value)]))
        }
        return bytes
    }
}

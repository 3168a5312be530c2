import Foundation

/// The `decoder` section of tokenizer.json: turns token strings back into text. Each step maps a
/// list of strings to a list of strings, as `decode_chain` does in HF `tokenizers`; the result is
/// their concatenation.
indirect enum TokenDecoder: Sendable {
    case sequence([TokenDecoder])
    case byteLevel
    case byteFallback
    case fuse
    case replace(PatternMatcher, with: [Unicode.Scalar])
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: Unicode.Scalar, prependFirst: Bool)

    static func parse(_ json: JSONObject) throws -> TokenDecoder {
        switch try json.type() {
        case "Sequence": return .sequence(try json.objects("decoders").map(parse))
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Replace":
            return .replace(
                try parsePattern(json.object("pattern")), with: Array(try json.string("content").unicodeScalars))
        case "Strip":
            guard let c = try json.string("content").unicodeScalars.first else {
                throw QSTError.tokenizerField(json.file, json.sub("content"), "expected one character")
            }
            return .strip(content: c, start: json.optionalInt("start") ?? 0, stop: json.optionalInt("stop") ?? 0)
        case "Metaspace":
            let r = (json.optionalString("replacement") ?? "▁").unicodeScalars.first ?? "▁"
            var prepend = json.bool("add_prefix_space", default: true)
            if let scheme = json.optionalString("prepend_scheme") { prepend = scheme != "never" }
            return .metaspace(replacement: r, prependFirst: prepend)
        case let other:
            throw json.unsupported("decoder type '\(other)'")
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let items):
            return items.reduce(tokens) { $1.decodeChain($0) }
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                if let b = ByteLevelAlphabet.decode(t) {
                    bytes.append(contentsOf: b)
                } else {
                    bytes.append(contentsOf: t.utf8)
                }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                // Foundation's String(bytes:encoding:) would drop a leading U+FEFF.
                let s = String(decoding: pending, as: UTF8.self)
                if s.utf8.elementsEqual(pending) {
                    out.append(s)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Self.fallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .replace(let pattern, let content):
            return tokens.map { t in
                var s = String()
                s.unicodeScalars.append(contentsOf: Normalizer.replaceAll(Array(t.unicodeScalars), pattern, content))
                return s
            }
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                var scalars = Array(t.unicodeScalars)
                var lo = 0
                while lo < start, lo < scalars.count, scalars[lo] == content { lo += 1 }
                var hi = scalars.count
                while scalars.count - hi < stop, hi > lo, scalars[hi - 1] == content { hi -= 1 }
                scalars = Array(scalars[lo..<hi])
                var s = String()
                s.unicodeScalars.append(contentsOf: scalars)
                return s
            }
        case .metaspace(let replacement, let prependFirst):
            return tokens.enumerated().map { i, t in
                var scalars = t.unicodeScalars.map { $0 == replacement ? " " : $0 }
                if i == 0, prependFirst, scalars.first == " " { scalars.removeFirst() }
                var s = String()
                s.unicodeScalars.append(contentsOf: scalars)
                return s
            }
        }
    }

    /// The byte of a `<0xNN>` token.
    static func fallbackByte(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

import Foundation

/// The `normalizer` section of tokenizer.json: string rewrites applied to each piece of input text
/// between added tokens, before pre-tokenization.
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend([Unicode.Scalar])
    case replace(PatternMatcher, with: [Unicode.Scalar])
    case strip(left: Bool, right: Bool)

    static func parse(_ json: JSONObject) throws -> Normalizer {
        switch try json.type() {
        case "Sequence":
            return .sequence(try json.objects("normalizers").map(parse))
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend":
            return .prepend(Array(try json.string("prepend").unicodeScalars))
        case "Replace":
            return .replace(
                try parsePattern(json.object("pattern")), with: Array(try json.string("content").unicodeScalars))
        case "Strip":
            return .strip(left: json.bool("strip_left", default: true), right: json.bool("strip_right", default: true))
        case let other:
            throw json.unsupported("normalizer type '\(other)'")
        }
    }

    func apply(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        switch self {
        case .sequence(let items):
            return items.reduce(text) { $1.apply($0) }
        case .nfc: return Self.foundation(text) { $0.precomposedStringWithCanonicalMapping }
        case .nfd: return Self.foundation(text) { $0.decomposedStringWithCanonicalMapping }
        case .nfkc: return Self.foundation(text) { $0.precomposedStringWithCompatibilityMapping }
        case .nfkd: return Self.foundation(text) { $0.decomposedStringWithCompatibilityMapping }
        case .lowercase:
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(text.count)
            for s in text {
                if s.value < 0x80 {
                    out.append(s.value >= 0x41 && s.value <= 0x5A ? Unicode.Scalar(s.value + 32)! : s)
                } else {
                    out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
                }
            }
            return out
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            return Self.replaceAll(text, pattern, content)
        case .strip(let left, let right):
            var lo = 0
            var hi = text.count
            if left { while lo < hi, text[lo].isWhiteSpace { lo += 1 } }
            if right { while hi > lo, text[hi - 1].isWhiteSpace { hi -= 1 } }
            return Array(text[lo..<hi])
        }
    }

    private static func foundation(_ text: [Unicode.Scalar], _ transform: (String) -> String) -> [Unicode.Scalar] {
        // Pure ASCII is unchanged by every normalization form.
        if text.allSatisfy({ $0.value < 0x80 }) { return text }
        var s = String()
        s.unicodeScalars.append(contentsOf: text)
        return Array(transform(s).unicodeScalars)
    }

    static func replaceAll(_ text: [Unicode.Scalar], _ pattern: PatternMatcher, _ content: [Unicode.Scalar]) -> [Unicode
        .Scalar]
    {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var last = 0
        for m in pattern.matches(in: text) where !m.isEmpty {
            out.append(contentsOf: text[last..<m.lowerBound])
            out.append(contentsOf: content)
            last = m.upperBound
        }
        out.append(contentsOf: text[last...])
        return out
    }
}

/// A `{"String": ...}` or `{"Regex": ...}` pattern as used by Replace and Split.
func parsePattern(_ json: JSONObject) throws -> PatternMatcher {
    do {
        if let literal = json.optionalString("String") { return try PatternMatcher(literal: literal) }
        if let regex = json.optionalString("Regex") { return try PatternMatcher(regex) }
    } catch let error as QSTError {
        throw QSTError.tokenizerField(json.file, json.path, error.message, kind: error.kind)
    }
    throw QSTError.tokenizerField(json.file, json.path, "expected a String or Regex pattern")
}

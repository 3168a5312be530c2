import Foundation

/// A strict JSON reader producing Foundation-style values ([String: Any], [Any], String, NSNumber,
/// Bool, NSNull). Foundation's JSONSerialization on Linux drops a U+FEFF at the start of a string
/// value, which would silently change vocabulary entries, so tokenizer files are read with this.
struct JSONParser {
    private let bytes: [UInt8]
    private var pos = 0
    private let file: String

    static func parse(_ data: Data, file: String) throws -> Any {
        var parser = JSONParser(bytes: [UInt8](data), file: file)
        parser.skipWhitespace()
        // A UTF-8 byte-order mark before the document is allowed.
        if parser.bytes.starts(with: [0xEF, 0xBB, 0xBF]) { parser.pos = 3 }
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.pos == parser.bytes.count else { throw parser.failure("trailing characters") }
        return value
    }

    private init(bytes: [UInt8], file: String) {
        self.bytes = bytes
        self.file = file
    }

    private func failure(_ what: String) -> TokenizerError {
        TokenizerError("\(file): not valid JSON: \(what) at byte \(pos)")
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count, bytes[pos] == 0x20 || bytes[pos] == 0x0A || bytes[pos] == 0x0D || bytes[pos] == 0x09 {
            pos += 1
        }
    }

    private mutating func value(depth: Int) throws -> Any {
        guard depth < 512 else { throw failure("nesting too deep") }
        skipWhitespace()
        guard pos < bytes.count else { throw failure("unexpected end") }
        switch bytes[pos] {
        case UInt8(ascii: "{"):
            pos += 1
            var dict: [String: Any] = [:]
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") { pos += 1; return dict }
            while true {
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw failure("expected a key") }
                let key = try string()
                skipWhitespace()
                guard pos < bytes.count, bytes[pos] == UInt8(ascii: ":") else { throw failure("expected ':'") }
                pos += 1
                dict[key] = try value(depth: depth + 1)
                skipWhitespace()
                guard pos < bytes.count else { throw failure("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                guard bytes[pos] == UInt8(ascii: "}") else { throw failure("expected ',' or '}'") }
                pos += 1
                return dict
            }
        case UInt8(ascii: "["):
            pos += 1
            var array: [Any] = []
            skipWhitespace()
            if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") { pos += 1; return array }
            while true {
                array.append(try value(depth: depth + 1))
                skipWhitespace()
                guard pos < bytes.count else { throw failure("unexpected end") }
                if bytes[pos] == UInt8(ascii: ",") { pos += 1; continue }
                guard bytes[pos] == UInt8(ascii: "]") else { throw failure("expected ',' or ']'") }
                pos += 1
                return array
            }
        case UInt8(ascii: "\""):
            return try string()
        case UInt8(ascii: "t"): try literal("true"); return true
        case UInt8(ascii: "f"): try literal("false"); return false
        case UInt8(ascii: "n"): try literal("null"); return NSNull()
        default:
            return try number()
        }
    }

    private mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard pos + w.count <= bytes.count, Array(bytes[pos..<(pos + w.count)]) == w else { throw failure("bad literal") }
        pos += w.count
    }

    private mutating func number() throws -> NSNumber {
        let start = pos
        var isInteger = true
        while pos < bytes.count {
            let c = bytes[pos]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
                pos += 1
            } else if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                isInteger = false
                pos += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if isInteger, let n = Int(text) { return NSNumber(value: n) }
        guard let d = Double(text) else { throw failure("bad number '\(text)'") }
        return NSNumber(value: d)
    }

    private mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[pos..<(pos + 4)], as: UTF8.self), radix: 16) else {
            throw failure("bad \\u escape")
        }
        pos += 4
        return v
    }

    private mutating func string() throws -> String {
        pos += 1   // opening quote
        let start = pos
        // Fast path: no escapes.
        while pos < bytes.count, bytes[pos] != UInt8(ascii: "\""), bytes[pos] != UInt8(ascii: "\\") { pos += 1 }
        guard pos < bytes.count else { throw failure("unterminated string") }
        if bytes[pos] == UInt8(ascii: "\"") {
            pos += 1
            return String(decoding: bytes[start..<(pos - 1)], as: UTF8.self)
        }
        var out = [UInt8](bytes[start..<pos])
        while true {
            guard pos < bytes.count else { throw failure("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            guard c == UInt8(ascii: "\\") else { out.append(c); continue }
            guard pos < bytes.count else { throw failure("unterminated string") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var v = try hex4()
                if v >= 0xD800 && v < 0xDC00, pos + 6 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                    pos += 2
                    let low = try hex4()
                    if low >= 0xDC00 && low < 0xE000 {
                        v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        out.append(contentsOf: String(Unicode.Scalar(0xFFFD)!).utf8)
                        v = low
                    }
                }
                let scalar = Unicode.Scalar(v) ?? Unicode.Scalar(0xFFFD)!
                out.append(contentsOf: String(scalar).utf8)
            default: out.append(e)   // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

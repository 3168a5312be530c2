/// A parsed JSON document that keeps what Foundation's JSONSerialization loses:
/// object members stay in file order with duplicates intact (so a header can be
/// checked for duplicate tensor names), numbers keep their source text (so an
/// integer like 2^63 is never silently rounded through Double) and string values keep
/// a leading U+FEFF (which JSONSerialization on Linux drops, changing vocabulary entries).
/// The package's one JSON reader: safetensors headers, config.json, tokenizer files,
/// data records and HTTP request bodies all go through it.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// Parses a complete document; surrounding whitespace is allowed, anything else
    /// after the value is an error, and so is a byte-order mark unless `allowingByteOrderMark`
    /// (Hugging Face tokenizer files sometimes start with one). Errors are `QSTError`s of kind
    /// `invalidJSON` whose text starts with `context`.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, context: String,
        allowingByteOrderMark: Bool = false
    ) throws -> JSONValue {
        var p = JSONParser(bytes: bytes, context: context)
        if allowingByteOrderMark, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { p.pos = 3 }
        return try p.parseDocument()
    }

    public static func parse(
        _ bytes: [UInt8], context: String,
        allowingByteOrderMark: Bool = false
    ) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0, context: context, allowingByteOrderMark: allowingByteOrderMark) }
    }

    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    public var objectValue: [(key: String, value: JSONValue)]? {
        if case let .object(o) = self { return o }; return nil
    }

    /// The member named `key` (the first one, if duplicated).
    public subscript(key: String) -> JSONValue? {
        objectValue?.first(where: { $0.key == key })?.value
    }

    /// The number as an exact Int if its text is a plain integer (no fraction, no
    /// exponent) that fits in Int; nil otherwise.
    public var exactInt: Int? {
        guard case let .number(text) = self,
            !text.contains(where: { $0 == "." || $0 == "e" || $0 == "E" })
        else { return nil }
        return Int(text)
    }

    public var doubleValue: Double? { if case let .number(t) = self { return Double(t) }; return nil }

    /// Short description of the kind of value, for error messages.
    public var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "a boolean"
        case .number: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}

extension JSONValue {
    /// `s` as a JSON string literal: quotes, backslashes and control characters are
    /// escaped, everything else (including non-ASCII) is written as UTF-8.
    public static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let hex = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

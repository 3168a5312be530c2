import Foundation
import QSTJSON

/// Typed reads from a Foundation-style tree ([String: Any], [Any], String, NSNumber, Bool, NSNull) that name the file and the field when a value is
/// missing or of the wrong kind.
struct JSONObject {
    let file: String
    let path: String
    let dict: [String: Any]

    init(file: String, path: String, _ value: Any?) throws {
        guard let dict = value as? [String: Any] else {
            throw QSTError.tokenizerField(file, path, "expected an object")
        }
        self.file = file
        self.path = path
        self.dict = dict
    }

    /// Parses with the package's one JSON reader (a leading byte-order mark allowed; syntax errors are
    /// `invalidJSON`).
    static func parse(_ data: Data, file: String) throws -> JSONObject {
        let document = try JSONValue.parse([UInt8](data), context: file, allowingByteOrderMark: true)
        return try JSONObject(file: file, path: "(root)", document.foundationValue)
    }

    func has(_ key: String) -> Bool { dict[key] != nil && !(dict[key] is NSNull) }
    func sub(_ key: String) -> String { path == "(root)" ? key : "\(path).\(key)" }

    func object(_ key: String) throws -> JSONObject { try JSONObject(file: file, path: sub(key), dict[key]) }

    func optionalObject(_ key: String) throws -> JSONObject? {
        has(key) ? try object(key) : nil
    }

    func string(_ key: String) throws -> String {
        guard let s = dict[key] as? String else { throw QSTError.tokenizerField(file, sub(key), "expected a string") }
        return s
    }

    func optionalString(_ key: String) -> String? { dict[key] as? String }

    func bool(_ key: String, default value: Bool) -> Bool {
        (dict[key] as? Bool) ?? (dict[key] as? NSNumber)?.boolValue ?? value
    }

    func int(_ key: String) throws -> Int {
        guard let n = dict[key] as? NSNumber else {
            throw QSTError.tokenizerField(file, sub(key), "expected an integer")
        }
        return n.intValue
    }

    func optionalInt(_ key: String) -> Int? { (dict[key] as? NSNumber)?.intValue }

    func array(_ key: String) throws -> [Any] {
        guard let a = dict[key] as? [Any] else { throw QSTError.tokenizerField(file, sub(key), "expected an array") }
        return a
    }

    func objects(_ key: String) throws -> [JSONObject] {
        try array(key).enumerated().map { try JSONObject(file: file, path: "\(sub(key))[\($0.offset)]", $0.element) }
    }

    func type() throws -> String { try string("type") }

    func unsupported(_ what: String) -> QSTError {
        QSTError.tokenizerField(file, path, "\(what) is not supported", kind: .unsupportedTokenizerFeature)
    }
}

extension JSONValue {
    /// The tree as Foundation-style values. Integers that fit in Int become Int NSNumbers, other
    /// numbers Double ones; of two equal keys the last wins (as in a dictionary literal).
    var foundationValue: Any {
        switch self {
        case .null: return NSNull()
        case let .bool(b): return b
        case let .number(text):
            if let n = exactInt { return NSNumber(value: n) }
            return NSNumber(value: Double(text) ?? .nan)
        case let .string(s): return s
        case let .array(items): return items.map(\.foundationValue)
        case let .object(members):
            var dict: [String: Any] = [:]
            dict.reserveCapacity(members.count)
            for (key, value) in members { dict[key] = value.foundationValue }
            return dict
        }
    }
}

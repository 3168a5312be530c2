// The one JSON reader lives in QSTJSON (no dependencies, so the tokenizer can use it too).
// QSTFormat re-exports it: the engine, the side network and the server, which already read
// files through QSTFormat, get `JSONValue` without importing a second module.
@_exported import QSTJSON

extension QSTError {
    /// A JSON syntax error as a format error (`invalidJSON`), with the same one-line text.
    public init(_ error: JSONSyntaxError) { self.init(error.description, kind: .invalidJSON) }
}

extension JSONValue {
    /// `parse(_:context:)` for a file QSTFormat validates: a syntax error is thrown as a `QSTError`.
    static func parseFormat(_ bytes: UnsafeRawBufferPointer, context: String) throws -> JSONValue {
        do { return try parse(bytes, context: context) } catch let e as JSONSyntaxError { throw QSTError(e) }
    }
}

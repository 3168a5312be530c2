import Foundation

/// The error every part of the tokenizer throws: one line naming the file and the field at fault.
/// (QSTTokenizer does not depend on QSTFormat, so it has its own error type.)
public struct TokenizerError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }

    static func field(_ file: String, _ field: String, _ what: String) -> TokenizerError {
        TokenizerError("\(file): field '\(field)': \(what)")
    }
}

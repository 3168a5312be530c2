import Foundation

/// The one error type of the toolchain: a single line that names the file and the
/// tensor, field or line at fault, so a command-line tool can print it as it is.
public struct QSTError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }

    /// `file: tensor 'name': what` — the shape every tensor-level error takes.
    public static func tensor(_ file: String, _ tensor: String, _ what: String) -> QSTError {
        QSTError("\(file): tensor '\(tensor)': \(what)")
    }
    public static func file(_ file: String, _ what: String) -> QSTError {
        QSTError("\(file): \(what)")
    }
}

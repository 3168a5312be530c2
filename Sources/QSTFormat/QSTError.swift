import Foundation

/// The one error type of the toolchain: a single line that names the file and the
/// tensor, field or line at fault, so a command-line tool can print it as it is, and
/// a `kind` saying which failure it is, so callers and tests can tell failures apart
/// without matching message text.
public struct QSTError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// Which failure an error reports: one case per failure, in the manner of the safetensors crate's
    /// `SafeTensorError`. The safetensors reader and the .qst4 checks run on open (preamble, header,
    /// directory) give every error its case; the other readers still throw `unclassified` errors and get
    /// their cases as they are revisited.
    public enum Kind: String, Sendable, Equatable {
        /// Not yet given a case (the message says what failed).
        case unclassified
        /// The file is shorter than the 8-byte header length.
        case headerTooSmall
        /// The header length is above the 100 MB limit.
        case headerTooLarge
        /// The header length runs past the end of the file.
        case invalidHeaderLength
        /// The header is not valid UTF-8.
        case invalidHeaderEncoding
        /// The header (or another JSON document read as part of a format) is not valid JSON.
        case invalidJSON
        /// The header is valid JSON but not the expected structure (not an object; `__metadata__` not an
        /// object of unique string fields).
        case invalidHeader
        /// Two header (or .qst4 directory) entries name the same tensor.
        case duplicateTensor
        /// A tensor's entry is malformed: not an object, a missing or mistyped field, an unknown dtype, a bad
        /// shape dimension or data offset value.
        case invalidTensorInfo
        /// A tensor's element or byte count does not fit in a 64-bit integer.
        case validationOverflow
        /// Data offsets (or .qst4 part, file and layer ranges) that disagree with the shape, lie outside the
        /// data section or their layer, overlap, or leave bytes of the data section unindexed.
        case invalidOffset
        /// The file has no tensor of the requested name.
        case tensorNotFound
        /// The tensor's dtype is not the one the caller reads it as.
        case dtypeMismatch
        /// The tensor's data is not aligned for the element type it is read as (or as the format requires).
        case misalignedData
        /// The destination's size differs from the tensor's element count.
        case bufferSizeMismatch
        /// An element's value does not fit the type it is read into.
        case valueOutOfRange
        /// A .qst4 file shorter than its preamble, or without the `QST4` magic.
        case notQST4
        /// A .qst4 major version this reader does not read.
        case unsupportedVersion
        /// A .qst4 preamble field out of range: alignment, header length or offset, data offset.
        case invalidPreamble
        /// A stored CRC-32C does not match the bytes it covers.
        case checksumMismatch
    }

    public let kind: Kind
    public let message: String
    public init(_ message: String, kind: Kind = .unclassified) {
        self.message = message
        self.kind = kind
    }
    public var description: String { message }
    public var errorDescription: String? { message }

    /// `file: tensor 'name': what` — the shape every tensor-level error takes.
    public static func tensor(_ file: String, _ tensor: String, _ what: String, kind: Kind = .unclassified) -> QSTError {
        QSTError("\(file): tensor '\(tensor)': \(what)", kind: kind)
    }
    public static func file(_ file: String, _ what: String, kind: Kind = .unclassified) -> QSTError {
        QSTError("\(file): \(what)", kind: kind)
    }
}

import Foundation

// Why QSTCore: the error type must sit below every module that throws it. QSTCore is the package's
// module of small shared pieces that the libraries already build on (QSTFormat, QSTNN, QSTEngine,
// QSTSide); QSTJSON, QSTTokenizer and QSTCLI take it on too, which costs them one tiny C target
// (CWorkerPool). QSTJSON was the other candidate, but then the layer library and the tools' plumbing
// would depend on a JSON parser only to name their errors. QSTFormat, QSTTokenizer, QSTNN and
// QSTCLI re-export this one type (`@_exported import struct QSTCore.QSTError`), so their users see it
// without importing QSTCore. Nothing here is hot, so QSTCore's `-Ounchecked` does not matter to it.

/// The one error type of the toolchain: a single line that names the file and the
/// tensor, field or line at fault, so a command-line tool can print it as it is, and
/// a `kind` saying which failure it is, so callers and tests can tell failures apart
/// without matching message text.
public struct QSTError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// Which failure an error reports: one case per failure, in the manner of the safetensors crate's
    /// `SafeTensorError`. Readers not yet revisited still throw `unclassified` errors (the message says
    /// what failed) and get their cases as they are.
    public enum Kind: String, Sendable, Equatable {
        /// Not yet given a case (the message says what failed).
        case unclassified

        // MARK: Files

        /// A file cannot be read: missing, not permitted, a folder.
        case unreadableFile
        /// A file cannot be created or written.
        case unwritableFile
        /// A text file (calibration text, say) is not valid UTF-8.
        case invalidTextEncoding

        // MARK: safetensors and .qst4

        /// The file is shorter than the 8-byte header length.
        case headerTooSmall
        /// The header length is above the 100 MB limit.
        case headerTooLarge
        /// The header length runs past the end of the file.
        case invalidHeaderLength
        /// The header is not valid UTF-8.
        case invalidHeaderEncoding
        /// A JSON document (a header, config.json, tokenizer.json, a record) is not valid JSON: the
        /// message is `context: invalid JSON at byte N: reason`.
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

        // MARK: Tokenizer files

        /// A field of tokenizer.json or tokenizer_config.json is missing, of the wrong type, or holds a
        /// value the tokenizer cannot use (a merge of tokens not in the vocabulary, a negative id).
        case invalidTokenizerField
        /// A tokenizer.json model, normalizer, pre-tokenizer, decoder or post-processor type this
        /// tokenizer does not implement.
        case unsupportedTokenizerFeature
        /// A regex of a tokenizer file that is malformed or uses a construct the matcher does not
        /// implement (lookbehind, say); the message gives the offset.
        case invalidPattern
        /// No chat format: tokenizer_config.json has no template or one that is not recognised, or a
        /// `--chat-format` name is unknown.
        case unknownChatFormat

        // MARK: Layers and training

        /// A token id (or a cross-entropy label, a candidate id) outside the vocabulary.
        case tokenOutOfRange
        /// A class label outside a classification head's `0..<K`.
        case labelOutOfRange
        /// A layer called with arguments that do not fit together: a classification head with no
        /// classes, regression (K = 1) without float targets.
        case invalidArgument
        /// A configuration value outside its valid range (training hyperparameters).
        case invalidConfiguration

        // MARK: Commands

        /// A command-line option's value is out of range, two options conflict, or a required one is
        /// missing.
        case invalidOption
        /// An input too small to work on: no examples, fewer tokens than a step needs.
        case notEnoughData
        /// A model of a family the command does not run (qst-serve and OPT).
        case unsupportedModel
        /// Two inputs that must agree do not: a run and the data it was trained on, a classification
        /// head's labels and a task's classes.
        case incompatibleInputs
        /// The output folder already holds a run (and `--resume` was not given).
        case outputExists
        /// The server cannot listen on the address it was given.
        case listenFailed
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
    public static func tensor(_ file: String, _ tensor: String, _ what: String, kind: Kind = .unclassified) -> QSTError
    {
        QSTError("\(file): tensor '\(tensor)': \(what)", kind: kind)
    }
    public static func file(_ file: String, _ what: String, kind: Kind = .unclassified) -> QSTError {
        QSTError("\(file): \(what)", kind: kind)
    }
    /// `file: field 'path': what` — a field of a JSON file (tokenizer.json, tokenizer_config.json).
    public static func field(_ file: String, _ field: String, _ what: String, kind: Kind) -> QSTError {
        QSTError("\(file): field '\(field)': \(what)", kind: kind)
    }
    /// `context: invalid JSON at byte N: reason` — a JSON syntax error (`invalidJSON`).
    public static func json(context: String, offset: Int, reason: String) -> QSTError {
        QSTError("\(context): invalid JSON at byte \(offset): \(reason)", kind: .invalidJSON)
    }
    /// A command-line option out of range, in conflict with another or missing (`invalidOption`).
    public static func option(_ message: String) -> QSTError { QSTError(message, kind: .invalidOption) }
}

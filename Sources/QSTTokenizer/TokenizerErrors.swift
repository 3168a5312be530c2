// The tokenizer throws the toolchain's one error type (QSTCore/QSTError.swift); its users see it
// without importing QSTCore.
@_exported import struct QSTCore.QSTError

extension QSTError {
    /// `file: field 'path': what` for a field of tokenizer.json or tokenizer_config.json that is missing,
    /// mistyped or holds a value the tokenizer cannot use (or, with another `kind`, names a feature or a
    /// pattern it does not implement).
    static func tokenizerField(
        _ file: String, _ field: String, _ what: String,
        kind: Kind = .invalidTokenizerField
    ) -> QSTError {
        .field(file, field, what, kind: kind)
    }
}

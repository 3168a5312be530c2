/// Element types as spelled in safetensors headers, plus NF4 (4-bit NormalFloat,
/// used only inside the .qst4 container, never in a safetensors file).
public enum DType: String, Sendable, Codable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u8 = "U8", u16 = "U16", u32 = "U32", u64 = "U64"
    case bool = "BOOL"
    case nf4 = "NF4"

    /// Bytes per element; nil for NF4, whose elements are packed two to a byte
    /// and carry per-block scales, so a size alone does not describe them.
    public var byteSize: Int? {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        case .nf4: return nil
        }
    }

    /// True for the IEEE-style types that `FloatConversion` widens to F32 exactly
    /// (F64 is narrowed). NF4 is a codebook index, not a float encoding, so false.
    public var isFloat: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: return true
        default: return false
        }
    }

    public var isInteger: Bool {
        switch self {
        case .i64, .i32, .i16, .i8, .u8, .u16, .u32, .u64: return true
        default: return false
        }
    }
}

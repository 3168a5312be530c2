/// Where one tensor lives in a safetensors file, as validated from its header.
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Absolute byte offset of the first element in the file (not relative to the data section).
    public let dataOffset: Int
    public let byteCount: Int

    public init(name: String, dtype: DType, shape: [Int], dataOffset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffset = dataOffset
        self.byteCount = byteCount
    }

    /// Product of the shape; 1 for a scalar (empty shape).
    public var elementCount: Int { shape.reduce(1, *) }
}

/// Rows of a frozen LM head `W [vocabSize, dim]` as F32, so the cross-entropy can stream over the vocabulary
/// without knowing whether the weights are F32, BF16 or NF4.
public protocol HeadRows {
    var vocabSize: Int { get }
    var dim: Int { get }
    /// Rows fetched per call by the chunked loss.
    var tileRows: Int { get }
    /// Returns rows `start..<start+count` as F32 `[count, dim]`, either pointing into existing storage or
    /// after writing them into `scratch` (capacity ≥ `count·dim`).
    func rows(start: Int, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float>
}

/// An F32 head already in memory: no copies.
public struct F32HeadRows: HeadRows {
    public let weight: UnsafePointer<Float>
    public let vocabSize: Int
    public let dim: Int
    public var tileRows: Int

    public init(weight: UnsafePointer<Float>, vocabSize: Int, dim: Int, tileRows: Int? = nil) {
        self.weight = weight; self.vocabSize = vocabSize; self.dim = dim
        self.tileRows = max(1, tileRows ?? vocabSize)
    }

    public func rows(start: Int, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        weight + start * dim
    }
}

/// A head decoded on demand (NF4, BF16, …): `fill(start, count, dest)` writes rows `start..<start+count`
/// as F32 into `dest [count, dim]`.
public struct DecodedHeadRows: HeadRows {
    public let vocabSize: Int
    public let dim: Int
    public var tileRows: Int
    public let fill: (Int, Int, UnsafeMutablePointer<Float>) -> Void

    public init(
        vocabSize: Int, dim: Int, tileRows: Int = 4096,
        fill: @escaping (Int, Int, UnsafeMutablePointer<Float>) -> Void
    ) {
        self.vocabSize = vocabSize; self.dim = dim; self.tileRows = max(1, tileRows); self.fill = fill
    }

    public func rows(start: Int, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        fill(start, count, scratch)
        return UnsafePointer(scratch)
    }
}

/// A raw pointer that may be captured by the `@Sendable` bodies of `Parallel.forRanges`, whose
/// chunks write disjoint elements. Safety is the caller's: workers touch disjoint elements and the
/// memory outlives the loop. The one pointer wrapper of the package (QSTFormat, QSTNN, QSTEngine and
/// QSTSide all use this one). Members are `@inlinable` because callers in other modules index it in
/// their inner loops.
@frozen public struct SendablePointer<Element>: @unchecked Sendable {
    public let base: UnsafeMutablePointer<Element>
    @inlinable public init(_ base: UnsafeMutablePointer<Element>) { self.base = base }
    /// For read-only arguments of loops that also write through other pointers.
    @inlinable public init(_ base: UnsafePointer<Element>) { self.base = UnsafeMutablePointer(mutating: base) }
    @inlinable public subscript(i: Int) -> Element {
        @inline(__always) get { base[i] }
        @inline(__always) nonmutating set { base[i] = newValue }
    }
    @inlinable @inline(__always)
    public static func + (p: SendablePointer, n: Int) -> SendablePointer { SendablePointer(p.base + n) }
}

/// The read-only twin of `SendablePointer`, for inputs that are `UnsafePointer`s.
@frozen public struct SendableConstPointer<Element>: @unchecked Sendable {
    public let base: UnsafePointer<Element>
    @inlinable public init(_ base: UnsafePointer<Element>) { self.base = base }
    @inlinable public subscript(i: Int) -> Element {
        @inline(__always) get { base[i] }
    }
    @inlinable @inline(__always)
    public static func + (p: SendableConstPointer, n: Int) -> SendableConstPointer { SendableConstPointer(p.base + n) }
}

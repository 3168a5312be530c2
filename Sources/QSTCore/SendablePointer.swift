/// Lets a raw pointer cross into the closures of `Parallel.forRanges`, whose chunks
/// write disjoint ranges; the caller guarantees the memory outlives the loop.
public struct SendablePointer<Pointee>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Pointee>
    public init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
}

public struct SendableConstPointer<Pointee>: @unchecked Sendable {
    public let pointer: UnsafePointer<Pointee>
    public init(_ pointer: UnsafePointer<Pointee>) { self.pointer = pointer }
}

import QSTNN

/// The processes one training run is spread over (data parallelism). Every process holds the same model
/// and data; each takes a slice of every global micro-batch, and after backward the trainer sums the
/// gradients over all of them, so every process then takes the same optimizer step.
public protocol GradientReducer: AnyObject {
    /// This process, 0 ..< size; rank 0 alone writes checkpoints, logs and progress.
    var rank: Int { get }
    var size: Int { get }
    /// Element-wise sum over all processes, in place; every process receives the same result.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    func allReduceSum(_ values: [Double]) throws -> [Double]
}

/// One process: nothing to reduce (the trainer's numbers are exactly the single-process ones).
public final class SingleProcess: GradientReducer {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    public func allReduceSum(_ values: [Double]) throws -> [Double] { values }
}

extension GradientReducer {
    public var isLeader: Bool { rank == 0 }

    /// The positions of a global micro-batch of `count` examples this process computes: contiguous,
    /// sizes differ by at most one (empty when `count < size` for the last ranks).
    public func shard(_ count: Int) -> Range<Int> {
        let base = count / size, extra = count % size
        let lower = rank * base + min(rank, extra)
        return lower..<(lower + base + (rank < extra ? 1 : 0))
    }

    /// Sums every parameter's gradient over all processes: packed into one buffer so a step costs one
    /// collective call (its latency, not the parameter count, dominates for small side networks).
    public func reduceGradients(_ parameters: [Parameter]) throws {
        guard size > 1 else { return }
        let total = parameters.reduce(0) { $0 + $1.count }
        let packed = FloatBuffer(count: total)
        var offset = 0
        for p in parameters { (packed.pointer + offset).update(from: p.grad, count: p.count); offset += p.count }
        try allReduceSum(UnsafeMutableBufferPointer(start: packed.pointer, count: total))
        offset = 0
        for p in parameters { p.grad.update(from: packed.pointer + offset, count: p.count); offset += p.count }
    }

    /// Bytes one step's gradient reduction sends into the collective (F32), for benchmarks and logs.
    public static func gradientBytes(_ parameters: [Parameter]) -> Int { 4 * parameters.reduce(0) { $0 + $1.count } }
}

import QSTCore

/// A plain, zero-initialised, 64-byte aligned array of `count` elements that lives until the
/// object is released. Activations, gradients and optimizer moments are all `Buffer<Float>`s;
/// ops take raw pointers so callers can also point into mapped files or sub-ranges.
/// Keep the buffer itself alive (a stored property, or `withExtendedLifetime`) while its `pointer` is in use:
/// Swift may release a local object right after its last mention.
public final class Buffer<Element: BitwiseCopyable>: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Element>

    public init(count: Int) {
        precondition(count >= 0, "Buffer count must be non-negative")
        self.count = count
        let bytes = max(1, count) * MemoryLayout<Element>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        pointer = raw.bindMemory(to: Element.self, capacity: max(1, count))
    }

    /// Copies `values` into a new buffer.
    public convenience init(_ values: [Element]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    /// Sets every byte to zero (0.0 for floats).
    public func zero() {
        UnsafeMutableRawPointer(pointer).initializeMemory(
            as: UInt8.self, repeating: 0,
            count: count * MemoryLayout<Element>.stride)
    }

    public subscript(i: Int) -> Element {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    public var array: [Element] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    public var constPointer: UnsafePointer<Element> { UnsafePointer(pointer) }
}

public typealias FloatBuffer = Buffer<Float>

/// Row-parallel loops whose workers each reduce into a private partial row that is summed at the end,
/// so parameter gradients (shared by all rows) can be accumulated without races.
enum RowReduce {
    /// Splits `0..<n` rows over the workers; `body(start, end, partial)` adds into `partial` (length `width`,
    /// zeroed). Afterwards all partials are added into `target` (`+=`).
    static func run(
        rows n: Int, width: Int, into targets: [SendablePointer<Float>], minRows: Int = 16,
        _ body: @Sendable (Int, Int, [SendablePointer<Float>]) -> Void
    ) {
        guard n > 0 else { return }
        let threads = Parallel.threadCount()
        let workers = max(1, min(threads, n / max(1, minRows)))
        let chunk = (n + workers - 1) / workers
        let partials = Buffer<Float>(count: workers * width * targets.count)
        let pbase = SendablePointer(partials.pointer)
        let nt = targets.count
        Parallel.forRanges(workers, threads: workers, minChunk: 1) { w0, w1 in
            for w in w0..<w1 {
                let start = w * chunk, end = min(n, start + chunk)
                if start >= end { continue }
                var ps: [SendablePointer<Float>] = []
                for t in 0..<nt { ps.append(pbase + (w * nt + t) * width) }
                body(start, end, ps)
            }
        }
        for w in 0..<workers {
            for t in 0..<nt {
                let p = pbase + (w * nt + t) * width
                let dst = targets[t]
                for j in 0..<width { dst[j] += p[j] }
            }
        }
    }
}

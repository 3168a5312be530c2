import Foundation

/// Splits work over the machine's cores. The engine keeps BLAS single-threaded
/// while these loops run (and the reverse), so the two never oversubscribe.
public enum Parallel {
    /// Number of worker threads: `QST_THREADS` if set, else the active processor count.
    public static func threadCount(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        if let s = environment["QST_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// The process's worker count, read once: parsing the environment on every loop cost
    /// a third of the generation speed.
    public static let defaultThreads = threadCount()

    /// Calls `body(start, end)` on disjoint chunks covering `0..<count`, in parallel.
    /// Chunks are at least `minChunk` long so tiny loops stay on one thread.
    public static func forRanges(_ count: Int, threads: Int = Parallel.defaultThreads, minChunk: Int = 1,
                                 _ body: @Sendable (Int, Int) -> Void) {
        guard count > 0 else { return }
        let workers = max(1, min(threads, count / max(1, minChunk)))
        if workers == 1 { body(0, count); return }
        let chunk = (count + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let start = w * chunk
            let end = min(count, start + chunk)
            if start < end { body(start, end) }
        }
    }
}

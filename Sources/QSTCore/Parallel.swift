import CWorkerPool
import Foundation

/// Splits work over the machine's cores. The engine keeps BLAS single-threaded
/// while these loops run (and the reverse), so the two never oversubscribe.
public enum Parallel {
    /// Number of worker threads: `QST_THREADS` if set (`EngineThreads.configure` sets it for `--threads`), else
    /// the active processor count. Cheap enough for every loop: one `getenv`, not Foundation's environment
    /// dictionary, and the processor count read once (Foundation reads the cgroup files on every call). The two
    /// had cost 60 % of a tiny side network's training step (row reductions ask on every call).
    public static func threadCount() -> Int {
        if let s = getenv("QST_THREADS"), let n = Int(String(cString: s)), n > 0 { return n }
        return processorCount
    }

    /// The active processor count, read once.
    static let processorCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// The process's worker count, read once: parsing the environment on every loop cost
    /// a third of the generation speed.
    public static let defaultThreads = threadCount()

    /// The process's worker threads, one set like BLAS's own: cores belong to the process, not to one
    /// model, and a second set would only compete with the first. Sized for all the active cores, so
    /// `EngineThreads.configure` may lower the thread count after the first loop ran.
    /// `QST_WORKER_POOL=off` leaves every loop to the scheduler's threads (for A/B measurements).
    static let pool =
        ProcessInfo.processInfo.environment["QST_WORKER_POOL"] == "off"
        ? nil
        : WorkerPool(threads: max(defaultThreads, processorCount))

    /// Calls `body(start, end)` on disjoint chunks covering `0..<count`, in parallel.
    /// Chunks are at least `minChunk` long so tiny loops stay on one thread.
    public static func forRanges(
        _ count: Int, threads: Int = Parallel.defaultThreads, minChunk: Int = 1,
        _ body: @Sendable (Int, Int) -> Void
    ) {
        guard count > 0 else { return }
        let workers = max(1, min(threads, count / max(1, minChunk)))
        if workers == 1 { body(0, count); return }
        if let pool, workers <= pool.threads, pool.run(count: count, parts: workers, body) { return }
        // The pool is taken (a loop inside a loop, or another thread's loop): the scheduler's threads.
        let chunk = (count + workers - 1) / workers
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let start = w * chunk
            let end = min(count, start + chunk)
            if start < end { body(start, end) }
        }
    }
}

/// Owns a `qst_pool` (CWorkerPool): threads that poll for work for a short while before sleeping.
final class WorkerPool: @unchecked Sendable {
    /// How long an idle worker polls before it sleeps. Decoding a token leaves gaps of a few
    /// microseconds between its ~200 parallel products; a longer poll only takes a core from BLAS
    /// between the engine's loops (measured: BENCHMARKS.md §19).
    static let spinMicroseconds: Int32 = 100

    private let handle: OpaquePointer
    let threads: Int

    init?(threads: Int) {
        guard threads > 1, let h = qst_pool_create(Int32(threads), Self.spinMicroseconds) else { return nil }
        handle = h
        self.threads = Int(qst_pool_threads(h))
    }

    deinit { qst_pool_destroy(handle) }

    /// Runs `body` over `parts` contiguous ranges of `0..<count`; false (nothing ran) when the pool is busy.
    func run(count: Int, parts: Int, _ body: @Sendable (Int, Int) -> Void) -> Bool {
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            return withUnsafeMutablePointer(to: &closure) { pointer in
                qst_pool_run(
                    handle, Int64(count), Int32(parts),
                    { context, start, end in
                        context!.assumingMemoryBound(to: (@Sendable (Int, Int) -> Void).self).pointee(
                            Int(start), Int(end))
                    }, pointer) != 0
            }
        }
    }
}

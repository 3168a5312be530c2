import CWorkerPool
import Foundation
import QSTCore
import XCTest

/// `Parallel.forRanges` over the spinning worker pool (CWorkerPool): every index exactly once whatever the
/// split, loops inside loops and loops from several threads at once (which must fall back, not deadlock),
/// and a pool whose workers sleep between jobs.
final class WorkerPoolTests: XCTestCase {
    /// Counts how often each index was visited.
    private func visits(_ count: Int, threads: Int, minChunk: Int = 1) -> [Int] {
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(1, count))
        hits.initialize(repeating: 0, count: max(1, count))
        defer { hits.deallocate() }
        let h = SendablePointer(hits)
        Parallel.forRanges(count, threads: threads, minChunk: minChunk) { a, b in
            precondition(a < b, "empty range handed out")
            for i in a..<b { h[i] += 1 }
        }
        return Array(UnsafeBufferPointer(start: hits, count: count))
    }

    func testEveryIndexRunsExactlyOnce() {
        for count in [1, 2, 3, 7, 16, 17, 100, 1001] {
            for threads in [1, 2, 3, 8] {
                XCTAssertEqual(
                    visits(count, threads: threads), [Int](repeating: 1, count: count),
                    "count \(count) threads \(threads)")
            }
        }
    }

    func testManySmallJobsInARow() {
        // Decoding runs ~200 loops per token: thousands of jobs back to back must all complete.
        let total = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        total.initialize(repeating: 0, count: 2)
        defer { total.deallocate() }
        let t = SendablePointer(total)
        for _ in 0..<20_000 {
            Parallel.forRanges(2, threads: 2) { a, b in for i in a..<b { t[i] += 1 } }
        }
        XCTAssertEqual(total[0], 20_000)
        XCTAssertEqual(total[1], 20_000)
    }

    func testNestedLoopsAndConcurrentCallers() {
        let n = 64
        let grid = UnsafeMutablePointer<Int>.allocate(capacity: n * n * 4)
        grid.initialize(repeating: 0, count: n * n * 4)
        defer { grid.deallocate() }
        let g = SendablePointer(grid)
        // Four threads each run an outer loop whose body runs an inner loop: the pool is busy for all
        // but one of them at a time, so the rest take the scheduler's threads.
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            Parallel.forRanges(n, threads: 2) { a, b in
                for i in a..<b {
                    Parallel.forRanges(n, threads: 2) { c, d in
                        for j in c..<d { g[caller * n * n + i * n + j] += 1 }
                    }
                }
            }
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: grid, count: n * n * 4)), [Int](repeating: 1, count: n * n * 4))
    }

    func testPoolWithSleepingWorkers() {
        // No spinning: every job must wake a sleeping worker or be run by the caller alone.
        guard let pool = qst_pool_create(3, 0) else { return XCTFail("pool not created") }
        defer { qst_pool_destroy(pool) }
        XCTAssertEqual(qst_pool_threads(pool), 3)
        var sum = [Int64](repeating: 0, count: 3000)
        sum.withUnsafeMutableBufferPointer { buf in
            for round in 0..<200 {
                if round % 50 == 0 { usleep(2000) }  // let the workers fall asleep
                let ok = qst_pool_run(
                    pool, 3000, 3,
                    { context, start, end in
                        let p = context!.assumingMemoryBound(to: Int64.self)
                        for i in start..<end { p[Int(i)] += 1 }
                    }, buf.baseAddress)
                XCTAssertEqual(ok, 1)
            }
        }
        XCTAssertEqual(sum, [Int64](repeating: 200, count: 3000))
    }

    /// `--threads` reaches every loop through QST_THREADS (EngineThreads.configure sets it after start-up), so
    /// the count is read on every call, not once; without it, the processor count.
    func testThreadCountFollowsQSTThreadsAsItChanges() {
        let saved = getenv("QST_THREADS").map { String(cString: $0) }
        defer { if let saved { setenv("QST_THREADS", saved, 1) } else { unsetenv("QST_THREADS") } }
        unsetenv("QST_THREADS")
        XCTAssertEqual(Parallel.threadCount(), ProcessInfo.processInfo.activeProcessorCount)
        setenv("QST_THREADS", "3", 1)
        XCTAssertEqual(Parallel.threadCount(), 3)
        setenv("QST_THREADS", "1", 1)
        XCTAssertEqual(Parallel.threadCount(), 1)
        for bad in ["0", "-2", "two", ""] {
            setenv("QST_THREADS", bad, 1)
            XCTAssertEqual(Parallel.threadCount(), ProcessInfo.processInfo.activeProcessorCount, bad)
        }
    }
}

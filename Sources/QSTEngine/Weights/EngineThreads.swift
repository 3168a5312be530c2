import CBLAS
import Foundation

/// Process-wide core settings, for the command-line tools to call once at start-up. The engine alternates
/// BLAS calls and `Parallel.forRanges` loops (never both at once), so both get the same thread count.
public enum EngineThreads {
    public static func configure(threads: Int) {
        guard threads > 0 else { return }
        openblas_set_num_threads(Int32(threads))
        setenv("QST_THREADS", String(threads), 1)
    }

    public static var blasThreads: Int { Int(openblas_get_num_threads()) }

    /// For a run that never calls BLAS: stops the worker threads OpenBLAS started as it loaded, which
    /// would otherwise spin (sched_yield) for about 0.1 s on the cores the run needs. A later BLAS call
    /// starts them again, so this is safe to call at any point.
    public static func stopBLASWorkers() { _ = blas_thread_shutdown_() }
}

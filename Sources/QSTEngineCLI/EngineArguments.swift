import ArgumentParser
import QSTCLI
import QSTEngine

/// Options every engine-running command shares (qst-eval, qst-generate, qst-serve, qst-tune).
public struct EngineArguments: ParsableArguments {
    public init() {}
    @Option(
        name: .customLong("resident-budget"),
        help: "Drop each layer's weight pages after use when the weights exceed this many MiB.")
    public var residentBudget: Int?
    @Option(help: "Threads for BLAS and the engine's own loops (default: all cores).")
    public var threads: Int?
    @Option(
        help:
            "NF4/BF16 matmul: auto (fastest; may use bf16 products, or int16 integer products for NF4 on AVX2 and on AVX-512 with VNNI but without bf16), exact (F32 kernels) or sgemm (dequantize + BLAS). QST_KERNELS=scalar|avx2|avx2vnni|avx512|neon caps the kernels."
    )
    public var matmul: MatmulPath = .kernelsAuto

    /// Checks the numbers, sets the thread count (process-wide) and returns the engine's options.
    public func options() throws -> EngineOptions {
        if let t = threads {
            guard t > 0 else { throw QSTError.option("--threads must be positive") }
            EngineThreads.configure(threads: t)
        }
        if let b = residentBudget, b < 0 { throw QSTError.option("--resident-budget must be ≥ 0") }
        return EngineOptions(matmulPath: matmul, residentBudgetMB: residentBudget)
    }
}

extension MatmulPath: ExpressibleByArgument {}

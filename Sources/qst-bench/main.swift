import ArgumentParser
import QSTCLI

/// Micro-benchmarks of the kernels and layers. They print numbers and assert nothing, so they live here
/// rather than in the test targets (which only assert behaviour); the Scripts/bench-* scripts run them
/// and BENCHMARKS.md keeps the numbers.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-bench",
        abstract: "Micro-benchmarks of the NF4 kernels and the layers (numbers only; build with -c release).",
        discussion:
            "Examples:\n  qst-bench nf4      # Scripts/bench-dequant\n  qst-bench layers   # Scripts/bench-layers",
        subcommands: [NF4Throughput.self, LayerTimings.self])
}

ToolRunner.main(Bench.self)

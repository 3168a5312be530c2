import ArgumentParser
import Foundation
import QSTCLI
import QSTSide

struct InitSide: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qst-init-side",
        abstract: "Create the initial QST side network for a base model (layout: Formats/SIDE.md).",
        discussion: """
            Examples:
              qst-init-side smollm2.qst4 -o side/     # starts as the base model
              qst-init-side smollm2.qst4 -o side/ --init reference --r 16
              qst-init-side smollm2.qst4 -o side/ --init base-pruned  # LST-style blocks
              qst-init-side smollm2.qst4 -o side/ --r 8 --downsample linear --dropout 0
              qst-init-side smollm2.qst4 -o side/ --batch 16 --seq-len 128 --json
            """)

    @Argument(help: "The base model: a .qst4 container, a safetensors folder or its config.json.")
    var model: String
    @Option(name: [.short, .customLong("output")], help: "Folder to write side.safetensors and side_config.json to.")
    var output: String
    @Option(
        help:
            "Reduction factor r: the side network is hidden_size / r wide (default: the valid r whose width is the largest at most \(SideConfig.defaultWidthLimit), e.g. 8 → 72 wide for SmolLM2-135M)."
    )
    var r: Int?
    @Option(
        name: .customLong("init"),
        help:
            "Starting point: base (the tuned model equals the base model at step 0: residual head mix, zero upsample), base-pruned (as base, with the side blocks copied from the base's layers pruned to the side width) or reference (the reference implementation's random upsample and gated head mix)."
    )
    var initialisation: SideInitialisation = .base
    @Option(
        help:
            "Downsampler: adapter (trainable bottleneck), linear (one trainable map), avgpool or maxpool (nothing to train); default adapter, linear with --init base-pruned."
    )
    var downsample: DownsampleKind?
    @Option(help: "Bottleneck width of the adapter downsampler.")
    var adapterHidden: Int = 16
    @Option(help: "Activation inside the adapter downsampler.")
    var activation: SideActivation = .swish
    @Option(help: "Dropout on the downsampler input during training.")
    var dropout: Float = 0.1
    @Option(
        help:
            "Starting logits of the layer gates: reference (every z_i = 0.5: the side stream holds mostly the last few layers' states) or running-mean (z_i = ln(i+1): the mean of every layer's downsampled state; trained worse on SST-2 and RTE, BENCHMARKS.md §40)."
    )
    var gateInit: SideGateInit = .reference
    @Option(help: "Seed of the initialisation.")
    var seed: UInt64 = 0
    @Option(help: "Micro-batch size for the memory estimate.")
    var batch: Int = 8
    @Option(help: "Sequence length for the memory estimate.")
    var seqLen: Int = 256
    @OptionGroup var format: OutputFormat

    func run() throws {
        let start = initialisation, kind = downsample ?? start.defaultDownsample, act = activation
        guard batch > 0, seqLen > 0 else { throw QSTError.option("--batch and --seq-len must be positive") }
        let (shape, weightBytes) = try SideSetup.baseShape(modelPath: model)
        let r = self.r ?? SideConfig.defaultReduction(for: shape)
        let config = SideConfig(
            base: shape, r: r, downsample: kind, adapterHidden: adapterHidden, activation: act,
            dropout: dropout, seed: seed, headMix: start.headMix)
        let weights = try SideWeights(config: config)
        weights.initialize(seed: seed)
        gateInit.apply(to: weights)
        if start == .basePruned {
            try PrunedBaseInit.initialize(weights, modelPath: model)
        }
        try SideWeightsIO.save(weights, directory: output)
        var report = SideSetup.report(weights: weights, batch: batch, seqLen: seqLen, backboneBytes: weightBytes)
        report.gateInit = gateInit
        if format.json { try JSONOutput.print(report); return }
        print("wrote \(output)/\(SideWeightsIO.weightsFileName) and \(SideWeightsIO.configFileName)")
        print(
            "side network: width \(config.width) (r \(r)), \(config.heads) heads × \(config.headDim), "
                + "MLP \(config.intermediate), \(kind.rawValue) downsampler"
                + (kind == .adapter ? " (hidden \(adapterHidden), \(act.rawValue))" : "") + ", dropout \(dropout), "
                + "init \(start.rawValue) (\(config.mix.rawValue) head mix, \(gateInit.rawValue) gates)")
        print(
            String(
                format: "trainable parameters: %ld (%.2f%% of the base's %ld)", report.trainableParameters,
                100 * report.trainableShare, report.baseParameters))
        print("optimizer state (AdamW moments): \(Units.bytes(report.optimizerStateBytes))")
        print("estimated training memory at batch \(batch) × \(seqLen) tokens:")
        for (name, bytes) in report.memory.rows {
            print("  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + Units.bytes(bytes))
        }
    }
}

extension DownsampleKind: ExpressibleByArgument {}
extension SideActivation: ExpressibleByArgument {}
extension SideInitialisation: ExpressibleByArgument {}
extension SideGateInit: ExpressibleByArgument {}

ToolRunner.main(InitSide.self)

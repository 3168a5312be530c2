import Foundation

/// Estimated training memory for one micro-batch of `batch × seqLen` tokens, by part, in bytes
/// (the accounting of Formats/RUNS.md §3). The frozen model's own share is passed in, as only the
/// engine knows how it keeps its weights.
public struct TrainingMemoryEstimate: Codable, Sendable {
    public var parameters: Int
    public var gradients: Int
    public var optimizerState: Int
    /// Downsampler inputs and intermediates kept for backward (none with pooling).
    public var downsamplerTapes: Int
    /// Side stream and downsampled inputs per layer, head pieces.
    public var sideStream: Int
    /// One side block's activations (recomputed per layer in backward), attention probabilities included.
    public var blockWorkspace: Int
    /// Chunked cross-entropy: `[chunk, vocab]` logits plus a head tile.
    public var crossEntropy: Int
    /// The frozen model's resident weights and one layer's activations (caller's estimate).
    public var backbone: Int
    public var total: Int {
        parameters + gradients + optimizerState + downsamplerTapes + sideStream + blockWorkspace + crossEntropy
            + backbone
    }

    public init(
        config c: SideConfig, parameterCount p: Int, batch: Int, seqLen: Int, backboneBytes: Int,
        crossEntropyChunk: Int = 128, headTileRows: Int = 4096
    ) {
        let n = batch * seqLen, L = c.base.layerCount, w = c.width, d = c.base.hiddenSize
        parameters = 4 * p
        gradients = 4 * p
        optimizerState = 8 * p
        downsamplerTapes = (L + 1) * DownsampleTape.bytes(rows: n, config: c)
        sideStream = 4 * ((L + 1) * n * w + L * n * w + n * (3 * d + w + 1) + 4 * n * w)
        blockWorkspace = SideBlockWorkspace.bytes(config: c, batch: batch, seqLen: seqLen)
        crossEntropy = 4 * (crossEntropyChunk * c.base.vocabSize + 2 * crossEntropyChunk * d + headTileRows * d)
        backbone = backboneBytes
    }

    /// Rows for a human-readable breakdown.
    public var rows: [(String, Int)] {
        [
            ("side parameters", parameters), ("gradients", gradients), ("AdamW moments", optimizerState),
            ("downsampler tapes", downsamplerTapes), ("side stream + head", sideStream),
            ("one block's activations", blockWorkspace), ("chunked cross-entropy", crossEntropy),
            ("frozen model (resident)", backbone), ("total", total),
        ]
    }
}

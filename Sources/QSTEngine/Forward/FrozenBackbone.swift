import QSTNN

/// A batch of token sequences, right-padded to a common length.
public struct TokenBatch: Sendable {
    public var ids: [Int32]  // [batch * seqLen], row-major
    public var lengths: [Int]  // real length of each sequence (the rest is padding)
    public var seqLen: Int
    public var batch: Int { lengths.count }

    public init(ids: [Int32], lengths: [Int], seqLen: Int) {
        precondition(ids.count == lengths.count * seqLen, "ids must be batch × seqLen")
        self.ids = ids; self.lengths = lengths; self.seqLen = seqLen
    }

    /// Pads sequences with `pad` to the longest one.
    public init(sequences: [[Int32]], pad: Int32 = 0) {
        let t = sequences.map(\.count).max() ?? 0
        var ids: [Int32] = []
        ids.reserveCapacity(sequences.count * t)
        for s in sequences { ids += s + [Int32](repeating: pad, count: t - s.count) }
        self.init(ids: ids, lengths: sequences.map(\.count), seqLen: t)
    }
}

/// What the side network needs from the frozen model: its hidden states, layer by layer,
/// and its LM head. The frozen model runs forward only; nothing here keeps activations
/// beyond what `visit` copies.
public protocol FrozenBackbone: AnyObject {
    var hiddenSize: Int { get }
    /// Width of what the LM head reads (OPT's word_embed_proj_dim when it projects); see the extension.
    var headInputSize: Int { get }
    var layerCount: Int { get }
    var vocabSize: Int { get }
    var intermediateSize: Int { get }
    var attentionHeads: Int { get }
    var keyValueHeads: Int { get }

    /// Runs the frozen forward over `batch`. Calls `visit(i, h)` for i = 0 (the embeddings)
    /// and after each layer i = 1…layerCount with h = [batch·seqLen, hiddenSize] row-major;
    /// `h` is only valid during the call. Returns norm(h_N) = the final RMSNorm output
    /// [batch·seqLen, headInputSize], which is what the LM head consumes.
    func forwardHiddenStates(_ batch: TokenBatch, visit: (Int, UnsafePointer<Float>) throws -> Void) throws -> [Float]

    /// The frozen LM head as rows the chunked cross-entropy can stream.
    func headRows() -> HeadRows
}

extension FrozenBackbone {
    /// Most models' head reads the hidden size.
    public var headInputSize: Int { hiddenSize }
}

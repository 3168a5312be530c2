import Foundation
import QSTEngine
import QSTNN
import QSTTokenizer
@testable import QSTSide

/// A tiny frozen "model" for tests: random embeddings, layers h ← h + tanh(h·W_i) mixed causally with the
/// previous token (so positions interact), a final RMSNorm, and the embedding matrix as tied LM head.
final class MockBackbone: FrozenBackbone {
    let hiddenSize: Int, layerCount: Int, vocabSize: Int, intermediateSize: Int
    let attentionHeads: Int, keyValueHeads: Int
    let embed: FloatBuffer
    let layers: [FloatBuffer]
    let normWeight: FloatBuffer
    private(set) var forwardCalls = 0
    /// Makes the final hidden state NaN (to test the non-finite stop).
    var poisoned = false

    init(shape s: BaseShape, seed: UInt64 = 7) {
        hiddenSize = s.hiddenSize; layerCount = s.layerCount; vocabSize = s.vocabSize
        intermediateSize = s.intermediateSize; attentionHeads = s.attentionHeads; keyValueHeads = s.keyValueHeads
        var rng = SplitMix64(seed: seed)
        embed = FloatBuffer((0..<(s.vocabSize * s.hiddenSize)).map { _ in rng.nextGaussian() })
        let scale = 1 / Float(s.hiddenSize).squareRoot()
        layers = (0..<s.layerCount).map { _ in
            FloatBuffer((0..<(s.hiddenSize * s.hiddenSize)).map { _ in rng.nextGaussian() * scale })
        }
        normWeight = FloatBuffer((0..<s.hiddenSize).map { _ in 1 + 0.1 * rng.nextGaussian() })
    }

    func forwardHiddenStates(_ batch: TokenBatch, visit: (Int, UnsafePointer<Float>) throws -> Void) throws -> [Float] {
        forwardCalls += 1
        let d = hiddenSize, n = batch.ids.count
        var h = [Float](repeating: 0, count: n * d)
        for i in 0..<n {
            let id = Int(batch.ids[i])
            guard id >= 0 && id < vocabSize else {
                throw QSTError("mock: token \(id) out of range", kind: .tokenOutOfRange)
            }
            for j in 0..<d { h[i * d + j] = embed[id * d + j] }
        }
        try h.withUnsafeBufferPointer { try visit(0, $0.baseAddress!) }
        for l in 0..<layerCount {
            var next = h
            let w = layers[l].pointer
            for b in 0..<batch.batch {
                for t in 0..<batch.seqLen {
                    let r = b * batch.seqLen + t
                    for o in 0..<d {
                        var acc: Float = 0
                        for k in 0..<d {
                            let prev: Float = t > 0 ? h[(r - 1) * d + k] : 0
                            acc += (h[r * d + k] + 0.5 * prev) * w[o * d + k]
                        }
                        next[r * d + o] += tanh(acc)
                    }
                }
            }
            h = next
            try h.withUnsafeBufferPointer { try visit(l + 1, $0.baseAddress!) }
        }
        var out = [Float](repeating: 0, count: n * d)
        h.withUnsafeBufferPointer { hp in
            out.withUnsafeMutableBufferPointer { op in
                RMSNorm.forward(
                    out: op.baseAddress!, rstd: nil, x: hp.baseAddress!, weight: normWeight.pointer,
                    n: n, d: d, eps: 1e-5)
            }
        }
        if poisoned { out[0] = .nan }
        return out
    }

    func headRows() -> HeadRows {
        F32HeadRows(weight: embed.constPointer, vocabSize: vocabSize, dim: hiddenSize, tileRows: 5)
    }
}

enum SideFixtures {
    /// d=16, 2 layers, 2 heads / 1 kv head, intermediate 32, vocab 11; r=2 gives width 8 and head size 4.
    static let tinyShape = BaseShape(
        hiddenSize: 16, layerCount: 2, attentionHeads: 2, keyValueHeads: 1,
        intermediateSize: 32, vocabSize: 11, rmsNormEps: 1e-5, ropeTheta: 10000)

    static func batch() -> SideBatch {
        let ids: [Int32] = [1, 4, 2, 7, 3, 9, 5, 8, 0, 0]
        let tokens = TokenBatch(ids: ids, lengths: [5, 3], seqLen: 5)
        let x = ChunkedCrossEntropy.ignoreIndex
        // Sequence 0 predicts its next tokens from position 1; sequence 1 only its last real step.
        let labels: [Int32] = [x, 2, 7, 3, x, x, 8, x, x, x]
        return SideBatch(tokens: tokens, labels: labels)
    }

    /// Weights with the reference init, then perturbed so gates, norms and biases are not at special values.
    static func weights(_ config: SideConfig, seed: UInt64 = 3) throws -> SideWeights {
        let w = try SideWeights(config: config)
        w.initialize(seed: seed)
        var rng = SplitMix64(seed: seed &+ 100)
        for s in w.specs { for j in 0..<s.count { w.values[s.offset + j] += 0.2 * (rng.nextFloat() - 0.5) } }
        return w
    }
}

/// Character-level toy tokenizer over the mock vocabulary: id 0 is EOS, letters map to 1…10.
struct ToyTokenizer: ExampleTokenizer {
    func encodeIDs(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        text.unicodeScalars.map { Int32($0.value % 10) + 1 }
    }
    var eosTokenID: Int32? { 0 }
    /// "<role>content" per turn; the generation prompt is "<assistant>".
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        messages.map { "<\($0.role)>\($0.content)" }.joined() + (addGenerationPrompt ? "<assistant>" : "")
    }
}

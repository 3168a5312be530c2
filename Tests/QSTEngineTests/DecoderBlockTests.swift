import CBLAS
import XCTest
import QSTNN
@testable import QSTEngine
import QSTTestSupport

/// The decoder block is shared with the side network, which calls it with OpenBLAS multi-threaded (QSTNN's
/// attention and plain sgemm), while the engine holds BLAS at one thread and parallelises itself. Both
/// routes must compute the same block.
final class DecoderBlockTests: XCTestCase {
    func runBlock(
        _ w: DecoderBlockWeights, shape: DecoderBlockShape, x0: [Float], batch: Int, tokens: Int,
        engineScope: Bool
    ) -> [Float] {
        let n = batch * tokens, half = shape.headDim / 2
        let x = FloatBuffer(x0)
        let cos = FloatBuffer(count: n * half), sin = FloatBuffer(count: n * half)
        let pos = Buffer<Int32>((0..<n).map { Int32($0 % tokens) })
        RoPE.cosSin(
            cos: cos.pointer, sin: sin.pointer, positions: pos.constPointer, n: n,
            invFreq: RoPE.inverseFrequencies(headDim: shape.headDim, theta: 10000))
        let k = FloatBuffer(count: n * shape.kvDim), v = FloatBuffer(count: n * shape.kvDim)
        var m = [UInt8](repeating: 1, count: n)
        m[n - 1] = 0  // last token of the last sequence is padding
        let mask = Buffer<UInt8>(m)
        let slot = KVSlot(
            keys: k.pointer, values: v.pointer, keyMask: mask.constPointer, capacity: tokens, pastLength: 0)
        let scope: BLASThreadScope? = engineScope ? BLASThreadScope() : nil
        XCTAssertEqual(BLASThreadScope.isSingleThreaded, engineScope)
        DecoderBlock.forward(
            x: x.pointer, batch: batch, newTokens: tokens, weights: w, shape: shape,
            cos: cos.constPointer, sin: sin.constPointer, kv: slot, scratch: DecoderScratch(shape: shape),
            context: MatmulContext(path: .dequantizeSGEMM, threads: 2))
        scope?.restore()
        return x.array
    }

    func testBlockSameWithMultiThreadedBLASAndEngineScope() throws {
        openblas_set_num_threads(2)
        for name in ["tiny-qwen2", "tiny-llama-bf16"] {
            let model = try FrozenModel(
                path: try Reference.tiny(name), options: EngineOptions(matmulPath: .dequantizeSGEMM))
            let w = try model.blockWeights(1)
            let batch = 2, tokens = 7
            var s: UInt64 = 9
            let x0: [Float] = (0..<(batch * tokens * model.hiddenSize)).map { _ in
                s = s &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(s >> 40) - (1 << 23)) / Float(1 << 23)
            }
            let a = runBlock(w, shape: model.blockShape, x0: x0, batch: batch, tokens: tokens, engineScope: false)
            let b = runBlock(w, shape: model.blockShape, x0: x0, batch: batch, tokens: tokens, engineScope: true)
            XCTAssertLessThanOrEqual(relativeFrobenius(b.map(Double.init), a.map(Double.init)), 1e-6, name)
            XCTAssertGreaterThan(
                relativeFrobenius(a.map(Double.init), x0.map(Double.init)), 0.01, "the block changed x")
        }
    }
}

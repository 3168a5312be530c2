import QSTCore

/// Dropout masks drawn per example, so an example's mask does not depend on the batch it is in: not on
/// its row, the padding, the batch size, nor which process of a data-parallel run computes it.
///
/// Rows are `keys.count × seqLen` (example-major, right-padded). For dropout call `call` (one per
/// application in a forward pass), element `(b, t, j)` of a `width`-wide activation is kept when
/// output number `t·width + j + 1` of `SplitMix64(seed: mix(keys[b] ^ mix(call + 1)))` is ≥ p.
public struct DropoutStreams: Sendable, Equatable {
    public var keys: [UInt64]
    public var seqLen: Int
    public var call: UInt64 = 0

    public init(keys: [UInt64], seqLen: Int, call: Int = 0) {
        self.keys = keys; self.seqLen = seqLen; self.call = UInt64(call)
    }

    /// The same examples for another dropout call of the forward pass.
    public func forCall(_ call: Int) -> DropoutStreams { DropoutStreams(keys: keys, seqLen: seqLen, call: call) }

    /// The stream of example `b` for this call.
    public func stream(_ b: Int) -> SplitMix64 { SplitMix64(seed: SplitMix64.mix(keys[b] ^ SplitMix64.mix(call &+ 1))) }
}

extension Dropout {
    /// Inverted dropout of `x [keys.count·seqLen, width]` with per-example streams (see `DropoutStreams`).
    public static func forward(
        out: UnsafeMutablePointer<Float>, mask: UnsafeMutablePointer<UInt8>,
        x: UnsafePointer<Float>, width: Int, p: Float, streams: DropoutStreams
    ) {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1)")
        let rowsPerExample = streams.seqLen, perExample = rowsPerExample * width
        let count = streams.keys.count * perExample
        guard count > 0 else { return }
        let starts = (0..<streams.keys.count).map { streams.stream($0) }
        let scale = 1 / (1 - p)
        let o = SendablePointer(out), xs = SendablePointer(x), m = SendablePointer(mask)
        Parallel.forRanges(count, minChunk: 8192) { a, b in
            // One division per example the range touches, not one per element (dropout was 2.4 % of a
            // training step on the AVX2 EPYC; BENCHMARKS.md §38).
            var i = a
            while i < b {
                let e = i / perExample, end = min(b, (e + 1) * perExample)
                let stream = starts[e]
                var k = i - e * perExample
                for j in i..<end {
                    k += 1
                    let keep = p == 0 || SplitMix64.unitFloat(stream.peek(k)) >= p
                    m[j] = keep ? 1 : 0
                    o[j] = keep ? xs[j] * scale : 0
                }
                i = end
            }
        }
    }
}

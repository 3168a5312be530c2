import ArgumentParser
import Foundation
import QSTCore
import QSTKernels

/// Throughput of the NF4 kernels; prints numbers only (Scripts/bench-dequant runs it).
struct NF4Throughput: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nf4",
        abstract:
            "NF4 quantize and dequantize throughput, then CRC-32C, SHA-256 and the error sums, on every kernel path the CPU has.",
        discussion:
            "Sizes 2^18 and 2^24 elements, block 64, 1 and 2 threads; best and median of repeats.\n\nExample: qst-bench nf4"
    )

    private struct Sample { var min: Double; var median: Double }

    private func time(_ repeats: Int, _ body: () -> Void) -> Sample {
        body()  // warm up: page in outputs, settle the clocks
        var t: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            t.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        t.sort()
        return Sample(min: t[0], median: t[t.count / 2])
    }

    private static func split(_ count: Int, threads: Int, _ body: @Sendable (Int, Int) -> Void) {
        let groups = (count + 31) / 32
        Parallel.forRanges(groups, threads: threads, minChunk: 1024) { g0, g1 in body(g0 * 32, min(count, g1 * 32)) }
    }

    private func line(_ label: String, _ s: Sample, elements: Int, bytes: Int) {
        let gbBest = Double(bytes) / s.min / 1e9, gbMed = Double(bytes) / s.median / 1e9
        let geBest = Double(elements) / s.min / 1e9, geMed = Double(elements) / s.median / 1e9
        let padded = label.padding(toLength: 40, withPad: " ", startingAt: 0)
        print(
            padded
                + String(
                    format: " %7.2f / %7.2f GB/s   %6.2f / %6.2f Gelem/s   (best / median)",
                    gbBest, gbMed, geBest, geMed))
    }

    func run() {
        let blockSize = 64
        let paths: [(Int32, String)] = [
            (Int32(QST_IMPL_AVX512), "avx512"), (Int32(QST_IMPL_AVX2), "avx2"),
            (Int32(QST_IMPL_NEON), "neon"), (Int32(QST_IMPL_SCALAR), "scalar"),
        ]
        .filter { qst_impl_supported($0.0) != 0 }
        print(
            "NF4 benchmark: block \(blockSize), paths \(paths.map(\.1).joined(separator: " ")), cores \(Parallel.threadCount())"
        )
        for count in [1 << 18, 1 << 24] {
            var rng = SystemRandomNumberGenerator()
            let x = (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
            let blocks = count / blockSize
            var codes = [UInt8](repeating: 0, count: count / 2)
            var absmax = [Float](repeating: 0, count: blocks)
            var f32 = [Float](repeating: 0, count: count)
            var bf16 = [UInt16](repeating: 0, count: count)
            let repeats = count > 1 << 20 ? 7 : 41
            print("-- \(count) elements (\(count / 2 / 1024) KiB codes, \(count * 4 / 1024) KiB F32 out)")
            x.withUnsafeBufferPointer { xp in
                codes.withUnsafeMutableBufferPointer { cp in
                    absmax.withUnsafeMutableBufferPointer { ap in
                        f32.withUnsafeMutableBufferPointer { fp in
                            bf16.withUnsafeMutableBufferPointer { hp in
                                let xs = SendablePointer(xp.baseAddress!), c = SendablePointer(cp.baseAddress!)
                                let a = SendablePointer(ap.baseAddress!), f = SendablePointer(fp.baseAddress!)
                                let h = SendablePointer(hp.baseAddress!)
                                for (impl, name) in paths {
                                    for threads in [1, 2] {
                                        let q = time(repeats) {
                                            Parallel.forRanges(blocks, threads: threads, minChunk: 256) { b0, b1 in
                                                _ = qst_nf4_quantize_blocks(
                                                    xs.base, Int64(count), Int64(blockSize), Int64(b0), Int64(b1),
                                                    c.base, a.base, impl)
                                            }
                                        }
                                        line(
                                            "quantize \(name) \(threads)T (F32 in)", q, elements: count,
                                            bytes: count * 4)
                                        let d = time(repeats) {
                                            Self.split(count, threads: threads) { lo, hi in
                                                qst_nf4_dequantize_f32(
                                                    c.base, a.base, Int64(blockSize), Int64(lo), Int64(hi - lo),
                                                    f.base + lo,
                                                    impl)
                                            }
                                        }
                                        line(
                                            "dequantize->F32 \(name) \(threads)T (F32 out)", d, elements: count,
                                            bytes: count * 4)
                                        let b = time(repeats) {
                                            Self.split(count, threads: threads) { lo, hi in
                                                qst_nf4_dequantize_bf16(
                                                    c.base, a.base, Int64(blockSize), Int64(lo), Int64(hi - lo),
                                                    h.base + lo,
                                                    impl)
                                            }
                                        }
                                        line(
                                            "dequantize->BF16 \(name) \(threads)T (BF16 out)", b, elements: count,
                                            bytes: count * 2)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        codecThroughput(paths)
    }

    /// CRC-32C (each tensor of a .qst4 is checked on load), SHA-256 (qst-quantize hashes every source file;
    /// any non-scalar path runs the CPU's SHA instructions when it has them) and the error sums (every quantized
    /// tensor's SQNR report), one thread: a cache-resident size (the instruction throughput) and
    /// 64 MiB (memory-bound, as whole tensors are).
    private func codecThroughput(_ paths: [(Int32, String)]) {
        for count in [1 << 17, 1 << 24] {
            var rng = SystemRandomNumberGenerator()
            let x = (0..<count).map { _ in Float.random(in: -1...1, using: &rng) }
            let y = x.map { $0 + 0.001 }
            let repeats = count > 1 << 20 ? 7 : 101
            print("-- \(count) elements (\(count * 4 / 1024) KiB F32) for CRC-32C, SHA-256 and error sums")
            for (impl, name) in paths {
                let c = time(repeats) { x.withUnsafeBytes { _ = qst_crc32c_impl(0, $0.baseAddress, $0.count, impl) } }
                line("crc32c \(name) 1T", c, elements: count, bytes: count * 4)
                let h = time(repeats) {
                    var ctx = qst_sha256_ctx()
                    qst_sha256_init_impl(&ctx, impl)
                    x.withUnsafeBytes { qst_sha256_update(&ctx, $0.baseAddress, $0.count) }
                    var digest = [UInt8](repeating: 0, count: 32)
                    qst_sha256_final(&ctx, &digest)
                }
                line("sha256 \(name) 1T", h, elements: count, bytes: count * 4)
                let e = time(repeats) {
                    var a = 0.0, b = 0.0, m = 0.0
                    qst_error_sums_impl(x, y, count, &a, &b, &m, impl)
                }
                line("error sums \(name) 1T (x and y in)", e, elements: count, bytes: count * 8)
            }
        }
    }
}

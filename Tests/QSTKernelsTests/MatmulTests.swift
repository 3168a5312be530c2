import Foundation
import QSTCore
import QSTKernels
import XCTest

/// Every matmul path (scalar, AVX-512 F32, AVX512_BF16, AVX2 F32, the int16 NF4 paths; GEMV and GEMM loop shapes) against a
/// Double reference computed here from weights decoded by this file's own NF4/BF16 decoding.
final class MatmulTests: XCTestCase {
    static let kernels: [(String, qst_kernel)] = [
        ("scalar", QST_KERNEL_SCALAR), ("avx512", QST_KERNEL_AVX512), ("avx512_bf16", QST_KERNEL_AVX512_BF16),
        ("avx2", QST_KERNEL_AVX2), ("avx2_int16", QST_KERNEL_AVX2_INT16), ("avx512_int16", QST_KERNEL_AVX512_INT16),
        ("auto", QST_KERNEL_AUTO), ("exact", QST_KERNEL_EXACT),
    ]
    static let shapes: [(String, qst_shape)] = [
        ("gemv", QST_SHAPE_GEMV), ("gemm", QST_SHAPE_GEMM), ("auto", QST_SHAPE_AUTO),
    ]

    /// Relative tolerance against sum |x * w|: float32 paths only reorder float32 sums;
    /// bfloat16 paths round both operands (2^-9 each) before multiplying.
    static func tolerance(_ path: Int32) -> Double {
        path == Int32(QST_KERNEL_AVX512_BF16.rawValue) ? 8e-3 : 2e-5
    }

    func testNF4AllPathsMatchReference() throws {
        for (m, k, n, block) in [
            (1, 64, 37, 64), (3, 128, 45, 32), (4, 256, 33, 64), (5, 192, 40, 64), (17, 128, 70, 128),
            (2, 576, 20, 64), (15, 640, 35, 64),
        ] {
            let w = TestMatrix.nf4(n: n, k: k, block: block, seed: UInt64(m * 1000 + k))
            try checkAllPaths(w, m: m, label: "nf4 m=\(m) k=\(k) n=\(n) block=\(block)")
        }
    }

    func testBF16AllPathsMatchReference() throws {
        for (m, k, n, ld) in [
            (1, 64, 37, 64), (2, 37, 45, 40), (4, 96, 33, 101), (6, 130, 40, 130), (19, 577, 35, 577),
        ] {
            let w = TestMatrix.bf16(n: n, k: k, ld: ld, seed: UInt64(m * 7 + k))
            try checkAllPaths(w, m: m, label: "bf16 m=\(m) k=\(k) n=\(n) ld=\(ld)")
        }
    }

    func testF32AllPathsMatchReference() throws {
        for (m, k, n, ld) in [(1, 64, 37, 64), (3, 33, 45, 35), (5, 300, 33, 300), (16, 17, 70, 20)] {
            let w = TestMatrix.f32(n: n, k: k, ld: ld, seed: UInt64(m * 13 + k))
            try checkAllPaths(w, m: m, label: "f32 m=\(m) k=\(k) n=\(n) ld=\(ld)")
        }
    }

    /// NF4 with a block that is even but not a multiple of 32: the vector paths decline it,
    /// AUTO and EXACT fall back to the scalar path and still agree with the reference.
    func testNF4SmallBlockFallsBackToScalar() throws {
        let w = TestMatrix.nf4(n: 20, k: 48, block: 16, seed: 5)
        try w.withWeight { weight in
            var copy = weight
            XCTAssertEqual(qst_matmul_resolve(&copy, 7, QST_KERNEL_AVX512, QST_SHAPE_AUTO), -1)
            XCTAssertEqual(
                qst_matmul_resolve(&copy, 7, QST_KERNEL_AUTO, QST_SHAPE_AUTO), Int32(QST_KERNEL_SCALAR.rawValue))
        }
        try checkAllPaths(w, m: 7, label: "nf4 block=16")
    }

    /// Two threads each computing half of the columns (as the engine splits work) give the
    /// same result as one call over all columns, bit for bit.
    func testColumnRangesSplitAcrossThreadsMatchSingleCall() throws {
        let (m, k, n) = (9, 128, 70)
        let w = TestMatrix.nf4(n: n, k: k, block: 64, seed: 42)
        let x = TestMatrix.randomFloats(count: m * k, seed: 43)
        let whole = try w.run(x: x, m: m, ldx: k, ldy: n, n0: 0, n1: n, kernel: QST_KERNEL_AUTO, shape: QST_SHAPE_AUTO)
        let split = SharedOutput(count: m * n)
        let failures = SharedOutput(count: 1)
        try w.withWeight { weight in
            let box = WeightBox(weight: weight)
            x.withUnsafeBufferPointer { xp in
                let xAddress = UInt(bitPattern: xp.baseAddress)
                Parallel.forRanges(n, threads: 2, minChunk: 1) { n0, n1 in
                    var wcopy = box.weight
                    let xPtr = UnsafePointer<Float>(bitPattern: xAddress)
                    let status = qst_matmul(
                        xPtr, Int64(m), Int64(k), &wcopy, split.pointer, Int64(n), Int64(n0), Int64(n1),
                        QST_KERNEL_AUTO)
                    if status != 0 { failures.pointer[0] = 1 }
                }
            }
        }
        XCTAssertEqual(failures.values, [0])
        XCTAssertEqual(split.values, whole)
    }

    /// The detected feature bits agree with the kernel's own view in /proc/cpuinfo.
    func testCPUFeaturesMatchProcCpuinfo() throws {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else {
            throw XCTSkip("no /proc/cpuinfo flags on this system")
        }
        let features = qst_cpu_features()
        let level = ProcessInfo.processInfo.environment["QST_KERNELS"]
        if level == "scalar" {
            XCTAssertEqual(features, UInt32(QST_CPU_FORCED_SCALAR), "QST_KERNELS=scalar must hide every feature")
            return
        }
        let flags = Set(line.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
        let avx2: [(String, UInt32)] = [
            ("avx2", QST_CPU_AVX2), ("fma", QST_CPU_FMA), ("f16c", QST_CPU_F16C),
            ("avx_vnni", QST_CPU_AVX_VNNI),
        ]
        let avx512: [(String, UInt32)] = [
            ("avx512f", QST_CPU_AVX512F), ("avx512bw", QST_CPU_AVX512BW), ("avx512vl", QST_CPU_AVX512VL),
            ("avx512dq", QST_CPU_AVX512DQ), ("avx512_bf16", QST_CPU_AVX512_BF16), ("avx512_vnni", QST_CPU_AVX512_VNNI),
        ]
        let amx: [(String, UInt32)] = [
            ("amx_tile", QST_CPU_AMX_TILE), ("amx_bf16", QST_CPU_AMX_BF16),
            ("amx_int8", QST_CPU_AMX_INT8),
        ]
        // QST_KERNELS=avx2 hides AVX-VNNI, AVX-512 and AMX (Zen 3 has none of them), =avx2vnni hides AVX-512
        // and AMX, =avx512 hides AMX (an unknown value hides nothing).
        let vnni: [(String, UInt32)] = [("avx_vnni", QST_CPU_AVX_VNNI)]
        let hidden: [(String, UInt32)] =
            level == "avx2"
            ? vnni + avx512 + amx
            : level == "avx2vnni" ? avx512 + amx : level == "avx512" ? amx : []
        let shown = (avx2 + avx512 + amx).filter { f in !hidden.contains { $0.1 == f.1 } }
        for (flag, bit) in shown {
            XCTAssertEqual(features & bit != 0, flags.contains(flag), "feature \(flag)")
        }
        for (flag, bit) in hidden {
            XCTAssertEqual(features & bit, 0, "feature \(flag) must be hidden by QST_KERNELS=\(level ?? "")")
        }
        if level == "avx2" || level == "avx2vnni", flags.contains("avx2"), flags.contains("fma") {
            XCTAssertEqual(qst_matmul_supported(QST_WEIGHT_NF4, QST_KERNEL_AVX512, QST_SHAPE_AUTO), 0)
            XCTAssertEqual(qst_matmul_supported(QST_WEIGHT_NF4, QST_KERNEL_AVX2, QST_SHAPE_AUTO), 1)
        }
        // Without AMX the permission request must report failure rather than pretend.
        if !flags.contains("amx_tile") { XCTAssertEqual(qst_amx_enable(), 0) }
    }

    /// QST_KERNEL_AUTO and qst_matmul_prefers_blas follow the measured table (README "Dispatch by a
    /// measured table"): AVX-512 BF16 where present; on AVX2 int8 NF4 decoding, the AVX2 loops
    /// otherwise; dequantize + sgemm only for many rows where nothing but scalar loops could run.
    func testAutoDispatchFollowsTheMeasuredTable() throws {
        let f = qst_cpu_features()
        let base: UInt32 = QST_CPU_AVX512F | QST_CPU_AVX512BW | QST_CPU_AVX512VL | QST_CPU_AVX512DQ
        let avx512 = f & base == base
        let bf16 = avx512 && f & QST_CPU_AVX512_BF16 != 0
        let avx2 = f & (QST_CPU_AVX2 | QST_CPU_FMA) == QST_CPU_AVX2 | QST_CPU_FMA
        let vnni512 = avx512 && avx2 && f & QST_CPU_AVX512_VNNI != 0
        let nf4 = TestMatrix.nf4(n: 8, k: 128, block: 64, seed: 3), bf = TestMatrix.bf16(n: 8, k: 128, ld: 128, seed: 4)
        func auto(_ w: TestMatrix, rows: Int) throws -> (Int32, Int32) {
            try w.withWeight { weight in
                var c = weight
                return (
                    qst_matmul_resolve(&c, Int64(rows), QST_KERNEL_AUTO, QST_SHAPE_AUTO),
                    qst_matmul_prefers_blas(&c, Int64(rows))
                )
            }
        }
        /// The loop shape (GEMV or GEMM) `rows` rows of x times `w` take with `kernel`.
        func shape(_ w: TestMatrix, rows: Int64, _ kernel: qst_kernel = QST_KERNEL_AUTO) throws -> Int32 {
            try w.withWeight { w in
                var c = w
                return qst_matmul_resolve_shape(&c, rows, kernel, QST_SHAPE_AUTO)
            }
        }
        let expectGEMV: Int32, expectGEMM: Int32, expectBF16GEMV: Int32
        if bf16 {
            (expectGEMV, expectGEMM, expectBF16GEMV) = (4, 4, 4)
        } else if avx512 {
            // Without bfloat16, NF4 takes the int16 GEMM and its GEMV loops (the same bits) where AVX512_VNNI
            // runs them; without VNNI it stays exact.
            let nf4Path = vnni512 ? Int32(QST_KERNEL_AVX512_INT16.rawValue) : 3
            (expectGEMV, expectGEMM, expectBF16GEMV) = (nf4Path, nf4Path, 3)
        } else if avx2 {
            // NF4 with 64-multiple blocks takes the integer GEMM for many rows whatever the matrix size.
            (expectGEMV, expectGEMM, expectBF16GEMV) = (
                Int32(QST_KERNEL_AVX2_INT16.rawValue), Int32(QST_KERNEL_AVX2_INT16.rawValue),
                Int32(QST_KERNEL_AVX2.rawValue)
            )
        } else {
            (expectGEMV, expectGEMM, expectBF16GEMV) = (2, 2, 2)
        }
        let scalarOnly = !avx512 && !avx2
        XCTAssertEqual(try auto(nf4, rows: 1).0, expectGEMV)
        XCTAssertEqual(try auto(nf4, rows: 1).1, 0, "decode never goes to BLAS")
        XCTAssertEqual(try auto(nf4, rows: 512).0, expectGEMM)
        XCTAssertEqual(try auto(nf4, rows: 512).1, scalarOnly ? 1 : 0)
        XCTAssertEqual(try auto(bf, rows: 1).0, expectBF16GEMV)
        if avx2 && !avx512 {
            XCTAssertEqual(try auto(bf, rows: 512).0, Int32(QST_KERNEL_AVX2.rawValue), "BF16 prompts stay exact")
            // A block that is a multiple of 64: the integer GEMV up to 8 rows (one 8-row pass; the int16
            // GEMM wins from 9), the integer GEMM beyond; without that GEMM, the GEMV up to 32 rows.
            let large = TestMatrix.nf4(n: 1024, k: 64, block: 64, seed: 6)
            let b32 = TestMatrix.nf4(n: 1024, k: 64, block: 32, seed: 5)
            XCTAssertEqual(try auto(large, rows: 9).0, Int32(QST_KERNEL_AVX2_INT16.rawValue))
            XCTAssertEqual(try shape(large, rows: 9), Int32(QST_SHAPE_GEMM.rawValue))
            XCTAssertEqual(try shape(large, rows: 8), Int32(QST_SHAPE_GEMV.rawValue), "GEMV up to 8 rows")
            XCTAssertEqual(try shape(b32, rows: 32), Int32(QST_SHAPE_GEMV.rawValue), "block 32: GEMV up to 32 rows")
            XCTAssertEqual(try shape(b32, rows: 33), Int32(QST_SHAPE_GEMM.rawValue))
            // An NF4 block that is not a multiple of 64 has no integer GEMM: many rows take the exact GEMM.
            XCTAssertEqual(try auto(b32, rows: 512).0, Int32(QST_KERNEL_AVX2.rawValue))
        }
        XCTAssertEqual(try auto(bf, rows: 512).1, scalarOnly ? 1 : 0)
        if avx512 {
            // NF4 GEMV row limits per path (matmul.c, gemv_row_limit): the bfloat16 GEMV up to 24 rows, the
            // int16 one (AUTO with AVX512_VNNI and without AVX512_BF16) up to 16, the exact one (AUTO without
            // either, and EXACT everywhere) up to 12, the GEMMs beyond.
            let gemv = Int32(QST_SHAPE_GEMV.rawValue), gemm = Int32(QST_SHAPE_GEMM.rawValue)
            XCTAssertEqual(try shape(nf4, rows: 12, QST_KERNEL_EXACT), gemv, "exact NF4 GEMV up to 12 rows")
            XCTAssertEqual(try shape(nf4, rows: 13, QST_KERNEL_EXACT), gemm)
            let autoLimit: Int64 = bf16 ? 24 : vnni512 ? 16 : 12
            XCTAssertEqual(try shape(nf4, rows: autoLimit), gemv)
            XCTAssertEqual(try shape(nf4, rows: autoLimit + 1), gemm)
        }
        // EXACT is the best float32 path: AVX-512 > AVX2 > scalar.
        try nf4.withWeight { weight in
            var c = weight
            XCTAssertEqual(
                qst_matmul_resolve(&c, 512, QST_KERNEL_EXACT, QST_SHAPE_AUTO),
                avx512 ? 3 : avx2 ? Int32(QST_KERNEL_AVX2.rawValue) : 2)
        }
        XCTAssertEqual(String(cString: qst_matmul_kernel_name(Int32(QST_KERNEL_AVX2_INT16.rawValue))), "avx2_int16")
        XCTAssertEqual(String(cString: qst_matmul_kernel_name(Int32(QST_KERNEL_AVX512_INT16.rawValue))), "avx512_int16")
    }

    func testInvalidArgumentsAreRejectedAndOutputUntouched() throws {
        let w = TestMatrix.nf4(n: 8, k: 64, block: 64, seed: 1)
        let x = TestMatrix.randomFloats(count: 64, seed: 2)
        try w.withWeight { weight in
            var y = [Float](repeating: 7, count: 8)
            var good = weight
            XCTAssertEqual(qst_matmul(x, 1, 64, &good, &y, 8, 0, 9, QST_KERNEL_AUTO), Int32(QST_MATMUL_BAD_ARGUMENT))
            XCTAssertEqual(qst_matmul(x, 1, 63, &good, &y, 8, 0, 8, QST_KERNEL_AUTO), Int32(QST_MATMUL_BAD_ARGUMENT))
            XCTAssertEqual(qst_matmul(x, 1, 64, &good, &y, 8, 5, 4, QST_KERNEL_AUTO), Int32(QST_MATMUL_BAD_ARGUMENT))
            var badBlock = weight
            badBlock.block = 48  // does not divide k = 64
            XCTAssertEqual(
                qst_matmul(x, 1, 64, &badBlock, &y, 8, 0, 8, QST_KERNEL_AUTO), Int32(QST_MATMUL_BAD_ARGUMENT))
            var badLd = weight
            badLd.ld = 65
            XCTAssertEqual(qst_matmul(x, 1, 64, &badLd, &y, 8, 0, 8, QST_KERNEL_AUTO), Int32(QST_MATMUL_BAD_ARGUMENT))
            XCTAssertEqual(y, [Float](repeating: 7, count: 8))
            // Empty ranges succeed without touching anything.
            XCTAssertEqual(qst_matmul(x, 0, 64, &good, &y, 8, 0, 8, QST_KERNEL_AUTO), Int32(QST_MATMUL_OK))
            XCTAssertEqual(qst_matmul(x, 1, 64, &good, &y, 8, 3, 3, QST_KERNEL_AUTO), Int32(QST_MATMUL_OK))
            XCTAssertEqual(y, [Float](repeating: 7, count: 8))
        }
    }

    /// Runs every supported kernel and loop shape over two column ranges, with padded row
    /// strides; checks the written columns against the reference and that nothing else changed.
    private func checkAllPaths(_ w: TestMatrix, m: Int, label: String) throws {
        let k = w.k, n = w.n
        let ldx = k + 3, ldy = n + 5
        let x = TestMatrix.randomFloats(count: m * ldx, seed: UInt64(n * 31 + m))
        let reference = w.reference(x: x, m: m, ldx: ldx)
        let int8Bound = w.int8Bound(x: x, m: m, ldx: ldx)
        // The integer GEMM rounds x and NF4 values to 8191 levels (32 products fit an int32 sum).
        let int8GemmBound = w.int8Bound(x: x, m: m, ldx: ldx, grid: 8191, levels: 8191)
        let cut = n / 3
        var checked = 0
        for (kname, kernel) in Self.kernels {
            for (sname, shape) in Self.shapes {
                let (path, ranShape) = try w.withWeight { weight -> (Int32, Int32) in
                    var copy = weight
                    return (
                        qst_matmul_resolve(&copy, Int64(m), kernel, shape),
                        qst_matmul_resolve_shape(&copy, Int64(m), kernel, shape)
                    )
                }
                if path < 0 {
                    XCTAssertNotEqual(kernel, QST_KERNEL_SCALAR, "\(label): scalar must always be available")
                    continue
                }
                var y = [Float](repeating: .nan, count: m * ldy)
                for (n0, n1) in [(0, cut), (cut, n)] {
                    let part = try w.run(
                        x: x, m: m, ldx: ldx, ldy: ldy, n0: n0, n1: n1, kernel: kernel, shape: shape,
                        into: y)
                    y = part
                }
                let tol = Self.tolerance(path)
                for i in 0..<m {
                    for j in 0..<ldy {
                        let got = Double(y[i * ldy + j])
                        if j >= n {
                            XCTAssertTrue(got.isNaN, "\(label) \(kname)/\(sname): wrote padding column \(j)")
                            continue
                        }
                        let (want, scale) = reference[i * n + j]
                        let int8 =
                            path == Int32(QST_KERNEL_AVX2_INT16.rawValue)
                            || path == Int32(QST_KERNEL_AVX512_INT16.rawValue)
                        let gemm = ranShape == Int32(QST_SHAPE_GEMM.rawValue)
                        let bound =
                            int8 ? (gemm ? int8GemmBound : int8Bound)[i * n + j] + 2e-5 * scale : tol * scale + 1e-30
                        XCTAssertLessThanOrEqual(
                            abs(got - want), bound,
                            "\(label) \(kname)/\(sname) path \(path): y[\(i),\(j)] = \(got), want \(want)")
                    }
                }
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 5, "\(label): too few paths ran")
    }
}

/// Raw-pointer output buffer written by several threads at disjoint indices.
final class SharedOutput: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(count: Int) {
        self.count = count
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: 0, count: count)
    }
    var values: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    deinit { pointer.deallocate() }
}

/// A qst_weight whose pointers stay valid for the duration of a withWeight call.
struct WeightBox: @unchecked Sendable {
    let weight: qst_weight
}

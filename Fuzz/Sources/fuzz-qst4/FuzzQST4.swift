import Foundation
import FuzzDriver
import FuzzSupport
import QSTEngine
import QSTFormat
import QSTSide

/// The `.qst4` preamble, header and tensor directory (validated on open), then what the tools do with
/// an opened container: verify checksums, decode tensors and embedded files, read an attached side network.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQST4(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    exercise(FuzzInput.write(bytes, name: "input.qst4"))
    // Most mutations of the header break its CRC-32C and stop at the preamble; the same input with the
    // header length and checksum fixed up lets them reach the directory validation.
    var fixed = Array(bytes)
    if fixed.count >= QST4.preambleSize {
        let hOff = fixed.withUnsafeBytes { Int(truncatingIfNeeded: $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)) }
        if hOff >= QST4.preambleSize, hOff <= fixed.count {
            let crc = fixed.withUnsafeBytes { Checksums.crc32c(UnsafeRawBufferPointer(rebasing: $0[hOff...])) }
            withUnsafeBytes(of: UInt64(fixed.count - hOff).littleEndian) { fixed.replaceSubrange(32..<40, with: $0) }
            withUnsafeBytes(of: crc.littleEndian) { fixed.replaceSubrange(40..<44, with: $0) }
            exercise(FuzzInput.write(Data(fixed), name: "fixed.qst4"))
        }
    }
    return 0
}

func exercise(_ path: String) {
    guard let c = try? QST4Container(path: path) else { return }
    _ = c.verify()
    for name in c.tensorNames { _ = try? c.floats(name) }
    for f in c.header.files { _ = try? c.embeddedFile(f.name) }
    _ = try? c.directorySHA256()
    if let config = try? c.configJSON() {
        _ = try? ModelConfig.parse(config, origin: path)
        _ = try? BaseShape.parse(configJSON: config, context: path)
    }
    _ = try? MergedContainer.attachedSide(c)
}

@_cdecl("fuzz_qst4_main")
public func fuzzQST4Main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzQST4)
}

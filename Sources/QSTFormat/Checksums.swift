import Foundation
import QSTKernels

/// CRC-32C per tensor (fast, hardware) and SHA-256 for identities and provenance.
public enum Checksums {
    public static func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        qst_crc32c(crc, bytes.baseAddress, bytes.count)
    }

    public static func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalizeHex()
    }

    public static func sha256Hex(_ data: Data) -> String { data.withUnsafeBytes { sha256Hex($0) } }

    /// SHA-256 of a whole file, read through a mapping.
    public static func sha256Hex(file path: String) throws -> String {
        let f = try MappedFile(path: path)
        return sha256Hex(f.bytes)
    }
}

public struct SHA256Hasher {
    private var ctx = qst_sha256_ctx()
    public init() { qst_sha256_init(&ctx) }
    /// Pinned rounds, for tests: `portable` runs the portable C rounds, otherwise the CPU's SHA-256
    /// instructions when it has them (`hasHardwareRounds`: SHA-NI, ARMv8 SHA2). Both give the same digest.
    init(portable: Bool) {
        qst_sha256_init_impl(&ctx, portable ? Int32(QST_IMPL_SCALAR) : Int32(QST_IMPL_AUTO))
    }
    static var hasHardwareRounds: Bool { qst_sha256_has_hardware() != 0 }
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { qst_sha256_update(&ctx, bytes.baseAddress, bytes.count) }
    }
    public mutating func finalizeHex() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        qst_sha256_final(&ctx, &digest)
        return digest.map { String(format: "%02x", $0) }.joined()
    }
}

import CZstd
import Foundation

/// Whole-buffer zstd compression for the small files a container embeds.
public enum Zstd {
    /// Embedded files are configs and tokenizers; nothing legitimate comes near this.
    public static let maxDecompressedSize = 1 << 30

    public static func compress(_ data: Data, level: Int32 = 3) throws -> Data {
        let bound = ZSTD_compressBound(data.count)
        var out = Data(count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            data.withUnsafeBytes { src in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, src.count, level)
            }
        }
        if ZSTD_isError(n) != 0 { throw QSTError("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        out.count = n
        return out
    }

    /// Decompresses one frame whose decompressed size must equal `expectedSize`.
    public static func decompress(_ data: UnsafeRawBufferPointer, expectedSize: Int, what: String) throws -> Data {
        // The size comes from a file header: check it against the frame before allocating anything.
        guard expectedSize >= 0, expectedSize <= maxDecompressedSize else {
            throw QSTError("\(what): declared size \(expectedSize) bytes is not in 0...\(maxDecompressedSize)")
        }
        let framed = ZSTD_getFrameContentSize(data.baseAddress, data.count)
        guard framed == UInt64(expectedSize) else {
            let found = framed >= UInt64.max - 1 ? "no readable zstd frame" : "a frame of \(framed) bytes"
            throw QSTError("\(what): declared size \(expectedSize) bytes but the data holds \(found)")
        }
        var out = Data(count: expectedSize)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_decompress(dst.baseAddress, expectedSize, data.baseAddress, data.count)
        }
        if ZSTD_isError(n) != 0 { throw QSTError("\(what): zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        guard n == expectedSize else { throw QSTError("\(what): decompressed to \(n) bytes, expected \(expectedSize)") }
        return out
    }
}

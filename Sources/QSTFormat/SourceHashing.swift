import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// SHA-256 of a list of files on a background thread. Mapped safetensors files are hashed through
/// the quantizer's own mapping, sharing its page mappings (`SharedPageRelease`); other files are read
/// with `pread` into one small buffer. Neither adds much to resident memory.
final class SourceHashing: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var finished = false
    private var result: Result<[QST4Source], Error> = .success([])

    init(mapped: [SharedPageRelease] = [], paths: [String]) {
        let thread = Thread { [self] in
            let r = Result { try mapped.map(Self.hash) + paths.map(Self.hash) }
            lock.withLock {
                result = r; finished = true
            }
            done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Whether the hashes are done: until then the hashing thread keeps one core busy, and the
    /// quantizer, to leave it that core, runs its loops on the calling thread alone.
    var isFinished: Bool { lock.withLock { finished } }

    func wait() throws -> [QST4Source] {
        done.wait()
        return try lock.withLock { try result.get() }
    }

    static func hash(_ pages: SharedPageRelease) -> QST4Source {
        var hasher = SHA256Hasher()
        let bytes = pages.file.bytes, chunk = 2 << 20
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            hasher.update(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            pages.hasherReached(end, chunkStart: offset)
            offset = end
        }
        return QST4Source(
            path: (pages.file.path as NSString).lastPathComponent, bytes: bytes.count, sha256: hasher.finalizeHex())
    }

    static func hash(_ path: String) throws -> QST4Source {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QSTError.file(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var hasher = SHA256Hasher()
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var total = 0
        while true {
            let n = pread(fd, buffer, chunk, off_t(total))
            if n < 0 {
                if errno == EINTR { continue }
                throw QSTError.file(path, "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(start: buffer, count: n))
            total += n
        }
        return QST4Source(path: (path as NSString).lastPathComponent, bytes: total, sha256: hasher.finalizeHex())
    }
}

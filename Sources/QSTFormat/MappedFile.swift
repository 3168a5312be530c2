import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// A read-only memory mapping of a whole file. Tensor views point into it, so it
/// must outlive them; pages are loaded by the kernel on first touch.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let size: Int
    public let base: UnsafeRawPointer

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QSTError.file(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw QSTError.file(path, "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw QSTError.file(path, "not a regular file") }
        size = Int(st.st_size)
        if size == 0 {
            // mmap refuses empty files; a one-byte anonymous page keeps `base` valid.
            guard let p = mmap(nil, 1, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                throw QSTError.file(path, "cannot map")
            }
            base = UnsafeRawPointer(p)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw QSTError.file(path, "cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), max(size, 1)) }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Hint that a byte range will be needed soon (prefetch) or not any more (drop
    /// its resident pages; they come back from the file on the next touch).
    public func advise(offset: Int, length: Int, willNeed: Bool) {
        guard size > 0, length > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset / page) * page
        let end = min(size, offset + length)
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, willNeed ? MADV_WILLNEED : MADV_DONTNEED)
    }
}

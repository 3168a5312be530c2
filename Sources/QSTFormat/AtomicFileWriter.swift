import Foundation
import QSTKernels
#if canImport(Glibc)
    import Glibc
#endif

/// Writes a file so that the target path either holds the complete new file or
/// is untouched. Bytes go to an unnamed file in the target's folder (O_TMPFILE), so
/// even a killed process leaves nothing behind; `commit()` fsyncs it, gives it a
/// temporary name and renames it over the target. Where the file system has no
/// O_TMPFILE, a named temporary file is used and removed if the writer is dropped.
/// Every `writebackStride` bytes the written range is handed to the disk in the background, so
/// the fsync of `commit()` waits for the last stretch only, not for the whole file.
public final class AtomicFileWriter {
    public let targetPath: String
    public let temporaryPath: String
    private var fd: Int32
    private let unnamed: Bool
    private var committed = false
    /// `prepare()` has synced the bytes and named the temporary file (removed again unless published).
    private var prepared = false
    public private(set) var bytesWritten: Int = 0
    /// Bytes before this offset were already handed to the disk (qst_file_start_writeback).
    private var writebackStart = 0
    static let writebackStride = 8 << 20

    // Linux x86-64/arm64 value of O_TMPFILE (__O_TMPFILE | O_DIRECTORY); Glibc's macro is not imported.
    private static let oTmpfile: Int32 = 0o20000000 | O_DIRECTORY

    public init(path: String) throws {
        targetPath = path
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        temporaryPath = (dir.isEmpty ? "" : dir + "/") + ".\(name).tmp.\(getpid())"
        var f = open(dir.isEmpty ? "." : dir, Self.oTmpfile | O_WRONLY | O_CLOEXEC, 0o644)
        unnamed = f >= 0
        if !unnamed {
            f = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
        fd = f
        guard fd >= 0 else {
            throw QSTError.file(
                path,
                "cannot create a temporary file in '\(dir.isEmpty ? "." : dir)': \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        if !committed {
            if fd >= 0 { close(fd) }
            if !unnamed || prepared { unlink(temporaryPath) }
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw QSTError.file(targetPath, "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
        }
        bytesWritten += buffer.count
        if bytesWritten - writebackStart >= Self.writebackStride {
            // Only a head start for fsync: a failure here is reported by fsync itself.
            _ = qst_file_start_writeback(fd, Int64(writebackStart), Int64(bytesWritten - writebackStart))
            writebackStart = bytesWritten
        }
    }

    public func write(_ data: [UInt8]) throws { try data.withUnsafeBytes { try write($0) } }
    public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }

    /// Zero bytes up to the next multiple of `alignment`.
    public func pad(to alignment: Int) throws {
        let rem = bytesWritten % alignment
        if rem != 0 { try write([UInt8](repeating: 0, count: alignment - rem)) }
    }

    /// Overwrites bytes already written (used to fill in a header at the end).
    public func patch(at offset: Int, _ data: [UInt8]) throws {
        let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == data.count else {
            throw QSTError.file(targetPath, "write failed: \(String(cString: strerror(errno)))")
        }
    }

    /// Puts the file at its target path: `prepare()` then `publish()`.
    public func commit() throws {
        try prepare()
        try publish()
    }

    /// Several files that belong together, all or none: every file is synced and named before the first is
    /// renamed into place, so a full disk or a failed sync leaves no target touched; if a rename still fails,
    /// the targets already published are removed again.
    public static func commitAll(_ writers: [AtomicFileWriter]) throws {
        for w in writers { try w.prepare() }
        var published: [AtomicFileWriter] = []
        do {
            for w in writers {
                try w.publish()
                published.append(w)
            }
        } catch {
            for w in published { unlink(w.targetPath) }
            throw error
        }
    }

    /// The step that can fail for lack of space: fsync, then a temporary name beside the target.
    func prepare() throws {
        guard fsync(fd) == 0 else {
            throw QSTError.file(targetPath, "fsync failed: \(String(cString: strerror(errno)))")
        }
        if unnamed {
            unlink(temporaryPath)
            guard linkat(AT_FDCWD, "/proc/self/fd/\(fd)", AT_FDCWD, temporaryPath, AT_SYMLINK_FOLLOW) == 0 else {
                throw QSTError.file(targetPath, "cannot name the temporary file: \(String(cString: strerror(errno)))")
            }
        }
        prepared = true
        close(fd)
        fd = -1
    }

    /// Renames the prepared file over the target and syncs the folder.
    func publish() throws {
        guard rename(temporaryPath, targetPath) == 0 else {
            unlink(temporaryPath)
            throw QSTError.file(
                targetPath, "cannot rename temporary file into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        // The rename itself is made durable by syncing the directory.
        let dir = (targetPath as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}

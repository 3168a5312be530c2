import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The fuzzers' input as the tools meet it: a file on disk (in /dev/shm where there is one, so a
/// run does no disk I/O), or split into the several files one input stands for.
public enum FuzzInput {
    /// This process's folder for input files.
    public static let directory: String = {
        let root = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = root + "/qst-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: FuzzInput.directory) }
        return dir
    }()

    /// Writes `bytes` to `name` inside `directory` (replacing what was there) and returns the path.
    @discardableResult
    public static func write(_ bytes: UnsafeRawBufferPointer, name: String) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "fuzz harness: cannot create \(path)")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "fuzz harness: cannot write \(path)")
            done += n
        }
        close(fd)
        return path
    }

    @discardableResult
    public static func write(_ data: Data, name: String) -> String { data.withUnsafeBytes { write($0, name: name) } }

    public static func remove(_ name: String) { unlink(directory + "/" + name) }

    /// Splits an input into parts at each `separator` line, so one input can stand for several files
    /// (seeds are built the same way by Scripts/fuzz).
    public static let separator = Array("\n--qst-fuzz-part--\n".utf8)

    public static func parts(_ bytes: UnsafeRawBufferPointer) -> [Data] {
        let b = Array(bytes)
        var out: [Data] = [], start = 0, i = 0
        while i + separator.count <= b.count {
            if b[i] == separator[0], Array(b[i..<(i + separator.count)]) == separator {
                out.append(Data(b[start..<i])); i += separator.count; start = i
            } else { i += 1 }
        }
        out.append(Data(b[start...]))
        return out
    }
}

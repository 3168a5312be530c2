import Foundation

/// NumPy's `.npy` format, version 1.0 (numpy.lib.format), for arrays that other tools read with
/// `numpy.load`: the magic `\x93NUMPY`, version bytes 1 0, the header's length as a little-endian u16,
/// then the header — a Python dict literal `{'descr': …, 'fortran_order': False, 'shape': (…), }`
/// padded with spaces and ended by `\n` so that the data starts at a multiple of 64 bytes — then the
/// values in C order. Formats/STATES.md names the arrays QST writes in it.
public enum NPYFile {
    /// The dtypes written here: NumPy's descriptor and the size of one value.
    public enum ElementType: String, Sendable {
        case float32 = "<f4"
        case int32 = "<i4"

        var size: Int { 4 }
    }

    /// Magic, version, length and header of an array of `shape` (NumPy writes the same bytes).
    public static func header(_ type: ElementType, shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(type.rawValue)', 'fortran_order': False, 'shape': \(dims), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let length = UInt16(dict.utf8.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + Array(dict.utf8)
    }

    /// Writes one array row block by row block; the file appears at `path` only when `commit()` has
    /// checked that exactly the shape's values were written (AtomicFileWriter: never a partial file).
    public final class Writer {
        private let out: AtomicFileWriter
        private let dataBytes: Int
        private let start: Int

        public init(path: String, type: ElementType, shape: [Int]) throws {
            guard !shape.isEmpty, shape.allSatisfy({ $0 >= 0 }) else {
                throw QSTError.file(path, "npy shape \(shape) is not a list of sizes")
            }
            out = try AtomicFileWriter(path: path)
            let h = NPYFile.header(type, shape: shape)
            guard h.count <= 65_535 + 10 else { throw QSTError.file(path, "npy header for \(shape) is too long") }
            try out.write(h)
            start = h.count
            dataBytes = shape.reduce(type.size, *)
        }

        public func append(_ values: [Float]) throws { try values.withUnsafeBytes { try out.write($0) } }
        public func append(_ values: [Int32]) throws { try values.withUnsafeBytes { try out.write($0) } }

        public func commit() throws { try Self.commitAll([self]) }

        /// Arrays that belong together (one `qst-eval states` folder): each must hold exactly its shape's values,
        /// then all appear or none (`AtomicFileWriter.commitAll`).
        public static func commitAll(_ writers: [Writer]) throws {
            for w in writers { try w.checkComplete() }
            try AtomicFileWriter.commitAll(writers.map(\.out))
        }

        private func checkComplete() throws {
            guard out.bytesWritten - start == dataBytes else {
                throw QSTError.file(
                    out.targetPath,
                    "npy array got \(out.bytesWritten - start) bytes of data, its shape needs \(dataBytes)")
            }
        }
    }
}

import Foundation

/// A model's weights in safetensors form: a single file, a Hugging Face folder with
/// `model.safetensors`, or a folder with `model.safetensors.index.json` and shards.
/// Every shard's header is validated on open and the index is checked against them,
/// so a missing shard or a stale index is reported before any weight is read.
public final class SafetensorsCheckpoint: Sendable {
    public static let indexFileName = "model.safetensors.index.json"
    public static let singleFileName = "model.safetensors"

    /// The path given to `init`.
    public let path: String
    /// The folder holding the weights (the file's folder for a single-file path).
    public let directory: String
    public let files: [SafetensorsFile]
    /// All tensor names, shard by shard in data-offset order.
    public let names: [String]
    /// Contents of `config.json` next to the weights, if present.
    public let configJSON: Data?
    private let fileIndex: [String: Int]

    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw QSTError.file(path, "no such file or folder")
        }
        let directory = isDir.boolValue ? path : (path as NSString).deletingLastPathComponent
        self.directory = directory.isEmpty ? "." : directory

        var files: [SafetensorsFile]
        var names: [String]
        var fileIndex: [String: Int] = [:]
        if isDir.boolValue || path.hasSuffix(".index.json") {
            let indexPath = isDir.boolValue ? (path as NSString).appendingPathComponent(Self.indexFileName) : path
            if FileManager.default.fileExists(atPath: indexPath) {
                (files, names, fileIndex) = try Self.openSharded(indexPath: indexPath, directory: self.directory)
            } else {
                let single = try Self.singleFile(in: path)
                files = [try SafetensorsFile(path: single)]
                names = files[0].orderedNames
            }
        } else {
            files = [try SafetensorsFile(path: path)]
            names = files[0].orderedNames
        }
        if files.count == 1 { for n in names { fileIndex[n] = 0 } }
        self.files = files
        self.names = names
        self.fileIndex = fileIndex
        configJSON = FileManager.default.contents(
            atPath: (self.directory as NSString).appendingPathComponent("config.json"))
    }

    public func file(for name: String) -> SafetensorsFile? {
        fileIndex[name].map { files[$0] }
    }

    public func info(_ name: String) -> SafetensorsTensorInfo? {
        file(for: name)?.tensors[name]
    }

    /// Like `info` but throws a message naming the checkpoint when the tensor is absent.
    public func requireInfo(_ name: String) throws -> SafetensorsTensorInfo {
        guard let t = info(name) else { throw QSTError.tensor(path, name, "no such tensor in the checkpoint") }
        return t
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let f = file(for: name) else { throw QSTError.tensor(path, name, "no such tensor in the checkpoint") }
        return try f.floats(name)
    }

    /// `model.safetensors` in the folder, else its only `.safetensors` file.
    static func singleFile(in dir: String) throws -> String {
        let model = (dir as NSString).appendingPathComponent(singleFileName)
        if FileManager.default.fileExists(atPath: model) { return model }
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        let candidates = entries.filter { $0.hasSuffix(".safetensors") }.sorted()
        guard candidates.count == 1 else {
            if candidates.isEmpty {
                throw QSTError.file(
                    dir, "no \(singleFileName), \(indexFileName) or other .safetensors file in this folder")
            }
            throw QSTError.file(
                dir,
                "several .safetensors files (\(candidates.joined(separator: ", "))) but no \(indexFileName) to say which to use"
            )
        }
        return (dir as NSString).appendingPathComponent(candidates[0])
    }

    static func openSharded(indexPath: String, directory: String) throws
        -> (files: [SafetensorsFile], names: [String], fileIndex: [String: Int])
    {
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw QSTError.file(indexPath, "cannot read")
        }
        let json = try data.withUnsafeBytes { try JSONValue.parse($0, context: indexPath) }
        guard let weightMap = json["weight_map"] else { throw QSTError.file(indexPath, "missing 'weight_map'") }
        guard let entries = weightMap.objectValue else {
            throw QSTError.file(indexPath, "'weight_map' is \(weightMap.kindName), expected an object")
        }

        // Shards in order of first mention, each with the tensors the index puts there.
        var shardOrder: [String] = []
        var indexed: [String: [String]] = [:]
        var shardOf: [String: String] = [:]
        for (name, value) in entries {
            guard let shard = value.stringValue else {
                throw QSTError.tensor(
                    indexPath, name, "weight_map entry is \(value.kindName), expected a shard file name")
            }
            guard shardOf.updateValue(shard, forKey: name) == nil else {
                throw QSTError.tensor(indexPath, name, "listed more than once in weight_map")
            }
            guard !shard.hasPrefix("/"), !shard.split(separator: "/").contains("..") else {
                throw QSTError.tensor(indexPath, name, "shard '\(shard)' is not a file name inside \(directory)")
            }
            if indexed[shard] == nil { shardOrder.append(shard) }
            indexed[shard, default: []].append(name)
        }
        guard !shardOrder.isEmpty else { throw QSTError.file(indexPath, "'weight_map' is empty") }

        var files: [SafetensorsFile] = []
        var names: [String] = []
        var fileIndex: [String: Int] = [:]
        var foundIn: [String: String] = [:]
        for shard in shardOrder {
            let shardPath = (directory as NSString).appendingPathComponent(shard)
            let wanted = indexed[shard] ?? []
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw QSTError.tensor(indexPath, wanted[0], "shard '\(shard)' named in weight_map does not exist")
            }
            let file = try SafetensorsFile(path: shardPath)
            // A tensor stored in two shards makes the checkpoint ambiguous even if the
            // index picks one of them.
            for n in file.orderedNames {
                if let other = foundIn.updateValue(shard, forKey: n) {
                    throw QSTError.tensor(shardPath, n, "also present in shard '\(other)'")
                }
            }
            for n in wanted where file.tensors[n] == nil {
                throw QSTError.tensor(
                    shardPath, n,
                    "listed in \((indexPath as NSString).lastPathComponent) for shard '\(shard)' but not present in it")
            }
            let wantedSet = Set(wanted)
            for n in file.orderedNames where wantedSet.contains(n) {
                fileIndex[n] = files.count
                names.append(n)
            }
            files.append(file)
        }
        return (files, names, fileIndex)
    }
}

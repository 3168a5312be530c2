import Foundation
import QSTEngine
import QSTFormat

/// Which frozen base a side network belongs to: its architecture, its dimensions and — for a `.qst4`
/// container — the SHA-256 of its tensor directory (`QST4Container.directorySHA256()`: names, shapes,
/// dtypes, quantization parameters and CRCs of every tensor, independent of timestamps). An adapter is
/// only attached to a base with the same identity.
public struct BaseIdentity: Codable, Sendable, Equatable {
    /// `architectures[0]` of config.json (e.g. `LlamaForCausalLM`), or the model type when absent.
    public var architecture: String
    public var modelType: String
    public var dimensions: BaseShape
    /// nil when the base is a safetensors folder (only the dimensions can then be compared).
    public var tensorDirectorySHA256: String?

    enum CodingKeys: String, CodingKey {
        case architecture, dimensions
        case modelType = "model_type", tensorDirectorySHA256 = "tensor_directory_sha256"
    }

    public init(architecture: String, modelType: String, dimensions: BaseShape, tensorDirectorySHA256: String?) {
        self.architecture = architecture; self.modelType = modelType; self.dimensions = dimensions
        self.tensorDirectorySHA256 = tensorDirectorySHA256
    }

    /// The identity of a weight source (`.qst4` container or safetensors folder).
    public static func of(_ source: WeightSource) throws -> BaseIdentity {
        let config = try source.configJSON()
        let json = try JSONValue.parse([UInt8](config), context: source.origin + " config.json")
        let modelType = json["model_type"]?.stringValue ?? "unknown"
        let arch = json["architectures"]?.arrayValue?.first?.stringValue ?? modelType
        let shape = try BaseShape.parse(configJSON: config, context: source.origin)
        let sha = try (source as? ContainerWeightSource)?.container.directorySHA256()
        return BaseIdentity(architecture: arch, modelType: modelType, dimensions: shape, tensorDirectorySHA256: sha)
    }

    /// Throws a one-line error naming both sides when `base` is not the model this adapter was built on.
    /// Dimensions must agree; tensor directories must agree when both are known.
    public func check(base: BaseIdentity, adapter: String, baseOrigin: String) throws {
        let a = dimensions, b = base.dimensions
        if a.family.name != b.family.name {
            throw QSTError(
                "\(adapter): adapter was trained on \(a.family.nameWithArticle) base, but \(baseOrigin) is "
                    + "\(b.family.name) (\(architecture) vs \(base.architecture))")
        }
        let dims: [(String, Int, Int)] = [
            ("hidden size", a.hiddenSize, b.hiddenSize), ("layers", a.layerCount, b.layerCount),
            ("attention heads", a.attentionHeads, b.attentionHeads),
            ("key/value heads", a.keyValueHeads, b.keyValueHeads),
            ("intermediate size", a.intermediateSize, b.intermediateSize),
            ("vocabulary", a.vocabSize, b.vocabSize),
        ]
        for (what, mine, theirs) in dims where mine != theirs {
            throw QSTError(
                "\(adapter): adapter was trained on a base with \(what) \(mine), but \(baseOrigin) has \(theirs) "
                    + "(\(architecture) vs \(base.architecture)); use the base it was exported for")
        }
        if let mine = tensorDirectorySHA256, let theirs = base.tensorDirectorySHA256, mine != theirs {
            throw QSTError(
                "\(adapter): adapter belongs to the base with tensor directory sha256 \(mine.prefix(16))…, "
                    + "but \(baseOrigin) has \(theirs.prefix(16))… (different weights or quantization); "
                    + "attach it to the container it was exported for")
        }
    }
}

extension BaseIdentity {
    /// The file qst-tune writes into its run folder, so exporting a run needs no `--base`.
    public static let runFileName = "base.json"

    public func write(run: String) throws { try TrainingCheckpoint.writeJSON(self, to: run + "/" + Self.runFileName) }

    /// The identity recorded beside `folder`: in it, or in its parent (a run's `best/`, `final/` or
    /// `checkpoint-N/`). nil when neither has one.
    public static func recorded(near folder: String) throws -> BaseIdentity? {
        let parent = (folder as NSString).deletingLastPathComponent
        for dir in [folder, parent.isEmpty ? "." : parent] {
            let path = dir + "/" + runFileName
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            do { return try JSONDecoder().decode(BaseIdentity.self, from: data) } catch {
                throw QSTError.file(path, "not a base identity written by qst-tune (\(error.localizedDescription))")
            }
        }
        return nil
    }
}

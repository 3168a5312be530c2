import Foundation
import QSTEngine
import QSTFormat

/// What the tools run: a base plus side networks from `--side` folders (adapter or side folders) and/or
/// the side network attached to a merged container. Every adapter's base identity is checked against the
/// base before anything runs.
public struct TunedModelSpec {
    public let base: FrozenModel
    public let sides: [SideWeights]
    /// One label per side network (its folder, or "PATH#side" for an attached one).
    public let names: [String]

    /// Opens `modelPath` and the side networks. Throws a one-line error naming the adapter on a mismatch.
    public static func open(modelPath: String, sidePaths: [String], options: EngineOptions) throws -> TunedModelSpec {
        let base = try FrozenModel(path: modelPath, options: options)
        var sides: [SideWeights] = [], names: [String] = []
        let identity = try BaseIdentity.of(base.source)
        if let c = (base.source as? ContainerWeightSource)?.container,
            let attached = try MergedContainer.attachedSide(c)
        {
            sides.append(attached.weights)
            names.append(modelPath + "#side")
        }
        for path in sidePaths {
            sides.append(try loadSide(path: path, baseIdentity: identity, modelPath: modelPath))
            names.append(path)
        }
        return TunedModelSpec(base: base, sides: sides, names: names)
    }

    /// Loads one adapter or side folder and checks its base identity against `baseIdentity`
    /// (`BaseIdentity.of(base.source)`); also used by qst-serve to add side networks at run time.
    public static func loadSide(path: String, baseIdentity identity: BaseIdentity, modelPath: String) throws
        -> SideWeights
    {
        let loaded = try AdapterIO.load(directory: path)
        // A plain side folder carries no identity beyond its dimensions.
        let claimed =
            loaded.config?.base
            ?? BaseIdentity(
                architecture: identity.architecture, modelType: identity.modelType,
                dimensions: loaded.weights.config.base,
                tensorDirectorySHA256: nil)
        try claimed.check(base: identity, adapter: path, baseOrigin: modelPath)
        return loaded.weights
    }

    /// The tuned model, or nil when there is no side network at all.
    public func tunedModel() throws -> TunedModel? { sides.isEmpty ? nil : try TunedModel(base: base, sides: sides) }
}

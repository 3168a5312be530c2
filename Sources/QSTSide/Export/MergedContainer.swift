import Foundation
import QSTEngine
import QSTFormat

/// A tuned model in one file: the base `.qst4` container copied unchanged plus the side network in the
/// header's `sections.side` (Formats/QST4.md §9): `format`, `adapter` (the adapter_config.json object),
/// `data` (the page-aligned byte range after the base's data) and `tensors` (one F32/F16/BF16 range each,
/// named as the reference state dict, with CRC-32C).
public enum MergedContainer {
    public static let sectionName = "side"

    /// Writes `output` = `base` + `weights`. The adapter's base identity must match `base`.
    public static func write(
        base: QST4Container, weights: SideWeights, adapter: AdapterConfig, output: String,
        progress: ((Int, Int) -> Void)? = nil
    ) throws {
        try adapter.base.check(
            base: try BaseIdentity.of(ContainerWeightSource(container: base)),
            adapter: "side network", baseOrigin: base.path)
        let appender = try QST4SectionAppender(base: base, output: output)
        try appender.copyBase(progress: progress)
        try appender.beginSection(sectionName)
        for t in try AdapterIO.tensors(weights, dtype: adapter.dtype) {
            try t.bytes.withUnsafeBytes {
                try appender.addTensor(name: t.name, dtype: t.dtype, shape: t.shape, bytes: $0)
            }
        }
        try appender.finish(fields: [
            sectionName: [
                "format": .string(AdapterConfig.formatTag),
                "adapter": try JSONAny(encoding: adapter),
            ]
        ])
    }

    /// Whether the container carries a side network.
    public static func hasSide(_ container: QST4Container) -> Bool { container.section(sectionName) != nil }

    /// The side network attached to `container`, checksum-verified and checked against the container's own
    /// tensor directory; nil when it has none.
    public static func attachedSide(_ container: QST4Container) throws -> (weights: SideWeights, config: AdapterConfig)?
    {
        guard let section = try container.dataSection(sectionName) else { return nil }
        let ctx = "\(container.path): sections.\(sectionName)"
        guard section.fields["format"]?.stringMember == AdapterConfig.formatTag else {
            throw QSTError("\(ctx): format is not \(AdapterConfig.formatTag)")
        }
        guard let raw = section.fields["adapter"] else { throw QSTError("\(ctx): missing field 'adapter'") }
        let config = try raw.decode(AdapterConfig.self, context: ctx + ".adapter")
        try config.base.check(
            base: try BaseIdentity.of(ContainerWeightSource(container: container)),
            adapter: ctx, baseOrigin: "its own base tensors")
        if let bad = container.verify(section).first { throw QSTError(bad) }
        // The section's tensors are checked against the layout before the weights are allocated.
        let specs = try SideWeights.layout(config.side).specs
        let known = Set(specs.map(\.name))
        for t in section.tensors where !known.contains(t.name) {
            throw QSTError("\(ctx): tensor '\(t.name)' is not part of this side network's layout")
        }
        for s in specs {
            guard let t = section.tensor(s.name) else { throw QSTError("\(ctx): tensor '\(s.name)' missing") }
            guard t.shape == s.shape else {
                throw QSTError("\(ctx): tensor '\(s.name)' has shape \(t.shape), expected \(s.shape)")
            }
        }
        let weights = try SideWeights(config: config.side)
        for s in weights.specs {
            guard let t = section.tensor(s.name) else { continue }
            try container.decode(t, into: weights.values.pointer + s.offset)
        }
        SideExportMapping.importInPlace(weights)
        return (weights, config)
    }
}

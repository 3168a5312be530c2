import Foundation
import QSTCore

/// Which tensors become NF4 and what the others are stored as (QLoRA's policy by default:
/// every 2-D weight of the transformer layers in NF4, everything else kept).
public struct QuantizationPolicy: Sendable {
    public var nf4 = NF4Parameters()
    public var keptDtype: DType = .bf16
    public var keepPatterns: [String] = []
    public var quantizeEmbeddings = false
    public init() {}

    public func validate() throws {
        try nf4.validate()
        guard [.f32, .f16, .bf16].contains(keptDtype) else { throw QSTError("--dtype must be f32, f16 or bf16") }
        for p in keepPatterns where (try? NSRegularExpression(pattern: p)) == nil {
            throw QSTError("--keep: '\(p)' is not a valid regular expression")
        }
    }

    public enum Decision: Equatable { case nf4, dense(DType) }

    public func decide(name: String, shape: [Int]) -> Decision {
        let kept = keepPatterns.contains { p in
            (try? NSRegularExpression(pattern: p))?.firstMatch(in: name, range: NSRange(name.startIndex..., in: name))
                != nil
        }
        let isMatrix = shape.count == 2
        if !isMatrix { return .dense(.f32) }
        if kept { return .dense(keptDtype) }
        let embeddingLike = name.contains("embed_tokens") || name.hasPrefix("lm_head")
        if ModelTensorOrder.layerIndex(of: name) != nil && name.hasSuffix(".weight") { return .nf4 }
        // OPT's project_in / project_out (opt-350m) are linear layers outside the blocks: NF4 as bitsandbytes
        // does for every nn.Linear but the head. Its learned positions are an embedding and stay dense.
        if name.hasSuffix("project_in.weight") || name.hasSuffix("project_out.weight") { return .nf4 }
        if embeddingLike && quantizeEmbeddings { return .nf4 }
        return .dense(keptDtype)
    }
}

/// The container's tensor order: embeddings, then layer by layer, then the final norm and head.
public enum ModelTensorOrder {
    public static func layerIndex(of name: String) -> Int? {
        guard let r = name.range(of: #"(^|\.)layers\.(\d+)\."#, options: .regularExpression) else { return nil }
        let digits = name[r].filter(\.isNumber)
        return Int(digits)
    }

    static func group(_ name: String) -> Int {
        if layerIndex(of: name) != nil { return 1 }
        if name.hasPrefix("lm_head") || name.hasPrefix("model.norm") || name == "norm.weight" { return 2 }
        if name.hasPrefix("model.decoder.final_layer_norm") || name.hasPrefix("model.decoder.project_out") { return 2 }
        return 0
    }

    public static func sorted(_ names: [String]) -> [String] {
        names.enumerated().sorted { a, b in
            let ga = group(a.element), gb = group(b.element)
            if ga != gb { return ga < gb }
            let la = layerIndex(of: a.element) ?? -1, lb = layerIndex(of: b.element) ?? -1
            if la != lb { return la < lb }
            return a.offset < b.offset
        }.map(\.element)
    }
}

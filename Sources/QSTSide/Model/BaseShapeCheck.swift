import QSTCore
import QSTEngine

extension BaseShape {
    /// Throws unless a side network built for this shape can run beside `backbone`: every dimension its weights
    /// (downsamplers, upsample, head) and its attention (heads, key/value heads) read must be the backbone's. The
    /// one check training (`SideModel`) and inference (`TunedModel`) both run, so a side network is accepted or
    /// refused alike by every tool. `side` names the side network ("side network 2"), `base` the model.
    public func checkRuns(beside backbone: any FrozenBackbone, side: String, base: String) throws {
        let dimensions: [(String, Int, Int)] = [
            ("hidden size", hiddenSize, backbone.hiddenSize),
            ("layer count", layerCount, backbone.layerCount),
            ("vocabulary size", vocabSize, backbone.vocabSize),
            ("attention heads", attentionHeads, backbone.attentionHeads),
            ("key/value heads", keyValueHeads, backbone.keyValueHeads),
            ("head input size", headSize, backbone.headInputSize),
        ]
        for (what, built, has) in dimensions where built != has {
            throw QSTError("\(side) was built for \(what) \(built) but \(base) has \(has)")
        }
    }
}

import Foundation

/// Per-input-channel importance for the NF4 scale search, collected from the frozen model on a calibration
/// text (QSTEngine's `ImportanceMatrix`): tensor name → mean squared input activation of each channel.
public struct NF4Calibration: Sendable {
    public var channels: [String: [Float]]
    /// SHA-256 (hex) of the calibration text's bytes, recorded in the container's metadata.
    public var textSHA256: String
    public var tokens: Int
    public var ctx: Int
    public var seconds: Double

    public init(channels: [String: [Float]], textSHA256: String, tokens: Int, ctx: Int, seconds: Double) {
        self.channels = channels; self.textSHA256 = textSHA256; self.tokens = tokens; self.ctx = ctx
        self.seconds = seconds
    }

    /// The search weights for one tensor: its channels' mean squares plus a floor of 1e-3 × their mean, so a
    /// channel that never fired on the calibration text still counts a little (its weights are not free).
    public func weights(for tensor: String) -> [Float]? {
        guard let c = channels[tensor], !c.isEmpty else { return nil }
        let mean = c.reduce(0.0) { $0 + Double($1) } / Double(c.count)
        let floor = Float(mean * 1e-3)
        return c.map { $0 + floor }
    }
}

/// What `QST4Quantize` does instead of plain absmax NF4: a scale search, weighted when calibrated.
public struct NF4ScaleSearchRequest: Sendable {
    public var settings: NF4SearchSettings
    /// nil = unweighted MSE search.
    public var calibration: NF4Calibration?

    public init(settings: NF4SearchSettings = NF4SearchSettings(), calibration: NF4Calibration? = nil) {
        self.settings = settings; self.calibration = calibration
    }

    /// The metadata value of a searched tensor (`scale_search` in Formats/QST4.md §4).
    public func method(weighted: Bool) -> String { weighted ? "weighted-mse" : "mse" }
}

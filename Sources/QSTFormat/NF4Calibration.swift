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
    /// For GPTQ: the full input Gram matrix `Σₜ xₜxₜᵀ` (`[K, K]`, row-major) of each linear, stored once per
    /// distinct input (q/k/v share one, gate/up one): `grams` by the recording linear's name, `gramOf` maps every
    /// linear's name to it. Empty when only the diagonal was collected.
    public var grams: [String: [Float]]
    public var gramOf: [String: String]
    /// Linears already quantized while calibrating (sequential GPTQ, `SequentialGPTQ` in QSTEngine): written as
    /// they are, by name.
    public var quantized: [String: NF4Tensor] = [:]

    public init(
        channels: [String: [Float]], textSHA256: String, tokens: Int, ctx: Int, seconds: Double,
        grams: [String: [Float]] = [:], gramOf: [String: String] = [:]
    ) {
        self.channels = channels; self.textSHA256 = textSHA256; self.tokens = tokens; self.ctx = ctx
        self.seconds = seconds; self.grams = grams; self.gramOf = gramOf
    }

    /// The input Gram matrix of `tensor`, if collected.
    public func gram(for tensor: String) -> [Float]? { gramOf[tensor].flatMap { grams[$0] } }

    /// The search weights for one tensor: its channels' mean squares plus a floor of 1e-3 × their mean, so a
    /// channel that never fired on the calibration text still counts a little (its weights are not free).
    public func weights(for tensor: String) -> [Float]? {
        guard let c = channels[tensor], !c.isEmpty else { return nil }
        let mean = c.reduce(0.0) { $0 + Double($1) } / Double(c.count)
        let floor = Float(mean * 1e-3)
        return c.map { $0 + floor }
    }
}

/// How calibrated NF4 chooses codes and scales.
public enum NF4CalibrationMethod: String, Sendable, CaseIterable {
    /// Per-block weighted scale search, codes by nearest value (NF4ScaleSearch).
    case search
    /// GPTQ: codes chosen column by column with error compensation through the input Gram matrix (NF4GPTQ).
    case gptq
}

/// What `QST4Quantize` does instead of plain absmax NF4: a scale search, weighted when calibrated, or GPTQ.
public struct NF4ScaleSearchRequest: Sendable {
    public var settings: NF4SearchSettings
    /// nil = unweighted MSE search.
    public var calibration: NF4Calibration?
    /// `.gptq` needs a calibration with Gram matrices; tensors without one fall back to the weighted search.
    public var method: NF4CalibrationMethod
    public var gptq: NF4GPTQ.Settings

    public init(
        settings: NF4SearchSettings = NF4SearchSettings(), calibration: NF4Calibration? = nil,
        method: NF4CalibrationMethod = .search, gptq: NF4GPTQ.Settings = NF4GPTQ.Settings()
    ) {
        self.settings = settings; self.calibration = calibration; self.method = method; self.gptq = gptq
        self.gptq.search = settings
    }

    /// The metadata value of a searched tensor (`scale_search` in Formats/QST4.md §4).
    public func method(weighted: Bool) -> String { weighted ? "weighted-mse" : "mse" }

    /// The container-level value: "gptq" when GPTQ was asked for.
    public var containerMethod: String { method == .gptq ? "gptq" : method(weighted: calibration != nil) }
}

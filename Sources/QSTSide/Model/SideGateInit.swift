import Foundation

/// How the layer gates `z_i` start (Formats/RUNS.md §1.1; `qst-init-side --gate-init`). Block `i` reads
/// `m_i = (1 − σ(z_i))·down_i(h_{i+1}) + σ(z_i)·s_i`, so each gate decides how much of the side stream survives a
/// layer. A state that entered at layer `l` reaches the head scaled by the product of the later gates' σ, and the
/// gradient reaching layer `l` from the head is scaled by the same product. AdamW moves a gate logit by about the
/// learning rate per step, so where the gates start is, in practice, where they stay (after 600 SST-2 steps at
/// the preset's 5e-4 no logit had moved by more than 0.054, BENCHMARKS.md §40; `qst-tune --gate-lr-scale`).
public enum SideGateInit: String, Codable, CaseIterable, Sendable {
    /// The reference's: every `z_i` = 0.5, σ ≈ 0.62 per layer. A state from 12 layers below the top reaches the
    /// head at 0.62¹² ≈ 0.3 % of its entry weight: the side stream is, in effect, the last few layers' states.
    case reference
    /// `z_i = ln(i + 1)`, σ(z_i) = (i + 1)/(i + 2): the side stream entering block `i` is the plain mean of the
    /// `i + 2` downsampled states read so far (before what the blocks add), and the gradient reaching layer `l`
    /// is scaled by (l + 1)/(L + 1) instead of 0.62^(L − l). Every layer's state reaches the head — and it trains
    /// worse: SST-2 77.3 % against 83.7 % after 600 steps, RTE near chance through 4 epochs (BENCHMARKS.md §40).
    case runningMean = "running-mean"

    /// The starting logit of layer `i`'s gate.
    public func logit(layer i: Int) -> Float {
        switch self {
        case .reference: return 0.5
        case .runningMean: return Float(log(Double(i + 1)))
        }
    }

    /// Sets every layer gate of `weights` to this start (the rest of the network is untouched; gates draw no
    /// random numbers, so the other tensors are the same for every gate start and seed).
    public func apply(to weights: SideWeights) {
        let c = weights.config
        for i in 0..<c.base.layerCount {
            guard let spec = weights.spec(c.gateName(i)) else { continue }
            weights.value(spec.name).update(repeating: logit(layer: i), count: spec.count)
        }
    }
}

import Foundation
import QSTNN

/// How a tensor is initialised, as in the reference (PyTorch module defaults).
public enum SideInit: String, Sendable, Codable {
    /// `nn.Linear` / `kaiming_uniform_(a=√5)`: U(−1/√fan_in, 1/√fan_in) for weights and biases.
    case uniformFanIn
    case ones
    case zeros
    /// Gate logits: the constant given in `SideTensorSpec.constant`.
    case constant
}

/// One named tensor of the side network, laid out at `offset` in the flat value/gradient buffers.
public struct SideTensorSpec: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var offset: Int
    public var initKind: SideInit
    /// fan_in for `uniformFanIn`, the value for `constant`.
    public var fanIn: Int
    public var constant: Float
    /// Weight decay applies to matrices only: biases, norm weights and gate logits are exempt
    /// (as Hugging Face's Trainer exempts biases and norm weights).
    public var decay: Bool
    public var count: Int { shape.reduce(1, *) }
}

/// All trainable tensors of the side network in one flat F32 buffer (and a same-shaped gradient buffer),
/// named as the reference's state dict so weights move between the two.
public final class SideWeights: @unchecked Sendable {
    public let config: SideConfig
    public let specs: [SideTensorSpec]
    public let values: FloatBuffer
    public let grads: FloatBuffer
    private let index: [String: Int]

    /// Zero-filled weights with the layout of `config` (see `initialize` for the reference init).
    public init(config: SideConfig) throws {
        let (specs, offset) = try Self.layout(config)
        self.config = config
        self.specs = specs
        values = FloatBuffer(count: offset)
        grads = FloatBuffer(count: offset)
        var idx: [String: Int] = [:]
        for (k, s) in specs.enumerated() { idx[s.name] = k }
        index = idx
    }

    /// The tensors of `config`'s side network and the floats they take, without allocating them (loaders
    /// check a file against this first, so a configuration cannot ask for more memory than its file holds).
    public static func layout(_ config: SideConfig) throws -> (specs: [SideTensorSpec], floats: Int) {
        try config.validate()
        var specs: [SideTensorSpec] = []
        var offset = 0
        func add(
            _ name: String, _ shape: [Int], _ initKind: SideInit, fanIn: Int = 0, constant: Float = 0,
            decay: Bool
        ) {
            let s = SideTensorSpec(
                name: name, shape: shape, offset: offset, initKind: initKind, fanIn: fanIn,
                constant: constant, decay: decay)
            // 16-float alignment keeps every tensor on a 64-byte boundary.
            offset += (s.count + 15) / 16 * 16
            specs.append(s)
        }
        let c = config, d = c.base.hiddenSize, w = c.width, L = c.base.layerCount
        for i in 0..<L {
            let p = c.downsamplePrefix(i)
            switch c.downsample {
            case .adapter:
                add(p + "adapter_A.weight", [c.adapterHidden, d], .uniformFanIn, fanIn: d, decay: true)
                add(p + "adapter_B.weight", [w, c.adapterHidden], .uniformFanIn, fanIn: c.adapterHidden, decay: true)
                add(p + "post_layer_norm.weight", [w], .ones, decay: false)
                add(p + "post_layer_norm.bias", [w], .zeros, decay: false)
            case .linear:
                add(p + "weight", [w, d], .uniformFanIn, fanIn: d, decay: true)
            case .avgpool, .maxpool:
                break
            }
        }
        for i in 0..<L { add(c.gateName(i), [w], .constant, constant: 0.5, decay: false) }
        c.base.family.layout(config: c) { add($0, $1, $2, fanIn: $3, constant: $4, decay: $5) }
        // Last, so a side network gains a head without moving any other tensor (ClassificationHead.attach).
        if let k = c.numLabels {
            add("score.weight", [k, d], .uniformFanIn, fanIn: d, decay: true)
            add("score.bias", [k], .uniformFanIn, fanIn: d, decay: false)
        }
        return (specs, offset)
    }

    /// The initialisation of Formats/RUNS.md §1.1 (the reference's, or the `base` start of §1.2), drawn from SplitMix64(seed) tensor by tensor in layout order.
    public func initialize(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for s in specs {
            let p = values.pointer + s.offset
            switch s.initKind {
            case .uniformFanIn:
                let bound = 1 / Float(s.fanIn).squareRoot()
                for j in 0..<s.count { p[j] = (2 * rng.nextFloat() - 1) * bound }
            case .ones: p.update(repeating: 1, count: s.count)
            case .zeros: p.update(repeating: 0, count: s.count)
            case .constant: p.update(repeating: s.constant, count: s.count)
            }
        }
    }

    /// Number of trainable scalars.
    public var parameterCount: Int { specs.reduce(0) { $0 + $1.count } }

    public func spec(_ name: String) -> SideTensorSpec? { index[name].map { specs[$0] } }

    /// Pointer to a tensor's values; the name must exist (internal layout names only).
    public func value(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let k = index[name] else { preconditionFailure("side network has no tensor \(name)") }
        return values.pointer + specs[k].offset
    }

    public func grad(_ name: String) -> UnsafeMutablePointer<Float> {
        guard let k = index[name] else { preconditionFailure("side network has no tensor \(name)") }
        return grads.pointer + specs[k].offset
    }

    public func zeroGradients() { grads.zero() }

    /// One `Parameter` per tensor for the optimizer, in layout order.
    public var parameters: [Parameter] {
        specs.map {
            Parameter(
                name: $0.name, value: values.pointer + $0.offset, grad: grads.pointer + $0.offset,
                count: $0.count, decay: $0.decay)
        }
    }
}

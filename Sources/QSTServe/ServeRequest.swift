import Foundation
import QSTEngine
import QSTSide

/// What one request asks the scheduler to generate (already tokenized and validated).
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingOptions
    public var stopStrings: [String]
    /// Token ids that end generation (EOS, the chat format's end tokens); never sent as text.
    public var stopTokens: Set<Int32>

    public init(
        prompt: [Int32], maxTokens: Int, sampling: SamplingOptions, stopStrings: [String],
        stopTokens: Set<Int32>
    ) {
        self.prompt = prompt; self.maxTokens = maxTokens; self.sampling = sampling
        self.stopStrings = stopStrings; self.stopTokens = stopTokens
    }
}

/// What the scheduler reports about a request, in order: text pieces, then one `finished` or `failed`.
public enum GenerationEvent: Sendable, Equatable {
    case text(String)
    /// `reason`: "stop" (EOS or a stop string) or "length" (max_tokens or the context); token counts for `usage`.
    case finished(reason: String, promptTokens: Int, completionTokens: Int)
    case failed(String)
}

/// Called on the scheduler's thread; must not block (hand the event to the connection's own thread).
public typealias GenerationSink = @Sendable (GenerationEvent) -> Void

/// A submitted request's handle: cancel it (a client that went away) and its slot is freed at the next step.
public final class RequestHandle: @unchecked Sendable {
    public let id: Int
    private let lock = NSLock()
    private var cancelledFlag = false

    init(id: Int) { self.id = id }

    public func cancel() { lock.withLock { cancelledFlag = true } }
    public var isCancelled: Bool { lock.withLock { cancelledFlag } }
}

/// Why `submit` refused a request.
public enum SubmitError: Error, Equatable, CustomStringConvertible {
    case queueFull(Int)
    case shuttingDown
    case promptTooLong(tokens: Int, context: Int)
    case emptyPrompt

    public var description: String {
        switch self {
        case .queueFull(let n): return "the server is busy: \(n) requests are already waiting; retry later"
        case .shuttingDown: return "the server is shutting down"
        case .promptTooLong(let t, let c):
            return "the prompt has \(t) tokens but the context holds \(c) (prompt and at least one new token)"
        case .emptyPrompt: return "the prompt is empty"
        }
    }
}

/// The models a server offers: the base under its name and side networks by name. Adding or removing a
/// side affects requests submitted afterwards; running requests keep the weights they started with.
public final class SideRegistry: @unchecked Sendable {
    public let baseName: String
    /// How every side network added here is packed (`SidePackPrecision(for:)` the base's matmul path, so
    /// that answers equal `qst-generate`'s).
    public let precision: SidePackPrecision
    private let lock = NSLock()
    private var sides: [String: SideInferenceWeights] = [:]
    private var order: [String] = []

    public init(baseName: String, precision: SidePackPrecision) { self.baseName = baseName; self.precision = precision }

    /// Adds (or replaces) a side network under `name`, packed for decoding once here (not per request).
    public func add(name: String, weights: SideWeights) {
        let weights = SideInferenceWeights(weights, precision: precision)
        lock.withLock {
            if sides[name] == nil { order.append(name) }
            sides[name] = weights
        }
    }

    /// Removes a side network; false when there was none of that name.
    @discardableResult public func remove(name: String) -> Bool {
        lock.withLock {
            guard sides.removeValue(forKey: name) != nil else { return false }
            order.removeAll { $0 == name }
            return true
        }
    }

    /// `.some(nil)` for the base, `.some(weights)` for a side network, nil for an unknown name.
    public func lookup(_ name: String) -> SideInferenceWeights?? {
        if name == baseName { return .some(nil) }
        return lock.withLock { sides[name].map { .some($0) } }
    }

    /// Every model name, the base first.
    public var names: [String] { [baseName] + lock.withLock { order } }
}

import Foundation
import QSTCore
import QSTEngine
import QSTFormat
import QSTNN
import QSTSide
import QSTTokenizer

/// Continuous batching over one frozen base and any number of side networks.
///
/// One engine thread runs `run()`. Each step takes every active request's next tokens — one sampled token
/// for a decoding request, a chunk of its prompt for a prefilling one — and runs them as one ragged forward
/// (`TunedModel.raggedStep`): the base's weights are read once for all requests, whatever side network each
/// uses, and each request's side session runs on its own rows. A new request joins at the next step; a
/// finished or cancelled one leaves. Prompt chunks are capped per step (`prefillChunk` tokens in all) so a
/// long new prompt delays the others' next token by one chunk's work, not the whole prompt's.
public final class BatchScheduler: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Requests decoded together; more wait in the queue.
        public var maxBatch: Int
        /// Requests waiting beyond the batch; more are refused (HTTP 429).
        public var maxQueue: Int
        /// Prompt tokens prefilled per step, over all prefilling requests.
        public var prefillChunk: Int
        /// Context length (prompt + continuation) of every request.
        public var context: Int

        public init(maxBatch: Int = 16, maxQueue: Int = 64, prefillChunk: Int = 128, context: Int = 2048) {
            self.maxBatch = maxBatch; self.maxQueue = maxQueue; self.prefillChunk = prefillChunk; self.context = context
        }
    }

    /// Counters for `/health` and the benchmark.
    public struct Stats: Sendable, Codable {
        public var active = 0, queued = 0, steps = 0, completed = 0, cancelled = 0, generatedTokens = 0,
            prefillTokens = 0
    }

    public let base: FrozenModel
    public let tokenizer: Tokenizer
    public let limits: Limits
    private let cond = NSCondition()
    private var queue: [Slot] = []
    private var active: [Slot] = []
    private var stopping = false
    private var cancelAt: Date?
    private var nextID = 0
    private var counters = Stats()

    public init(base: FrozenModel, tokenizer: Tokenizer, limits: Limits) {
        self.base = base; self.tokenizer = tokenizer; self.limits = limits
    }

    /// One request in flight.
    final class Slot {
        let handle: RequestHandle
        let request: GenerationRequest
        let side: SideInferenceWeights?
        let sink: GenerationSink
        var cache: KVCache?
        var session: SideSession?
        var prefilled = 0
        var generated: [Int32] = []
        var sampler: Sampler
        var decoder: StreamingDecoder
        var stops: StopStrings

        init(
            handle: RequestHandle, request: GenerationRequest, side: SideInferenceWeights?,
            sink: @escaping GenerationSink,
            tokenizer: Tokenizer
        ) {
            self.handle = handle; self.request = request; self.side = side; self.sink = sink
            sampler = Sampler(request.sampling)
            decoder = StreamingDecoder(tokenizer: tokenizer)
            stops = StopStrings(request.stopStrings)
        }
        var decoding: Bool { prefilled == request.prompt.count }
    }

    public var stats: Stats {
        cond.withLock {
            var s = counters; s.active = active.count; s.queued = queue.count; return s
        }
    }

    /// Queues a request for the base (`side` nil) or a side network. Throws `SubmitError` when it cannot run.
    public func submit(
        _ request: GenerationRequest, side: SideInferenceWeights?,
        sink: @escaping GenerationSink
    ) throws -> RequestHandle {
        guard !request.prompt.isEmpty else { throw SubmitError.emptyPrompt }
        guard request.prompt.count < limits.context else {
            throw SubmitError.promptTooLong(tokens: request.prompt.count, context: limits.context)
        }
        return try cond.withLock {
            guard !stopping else { throw SubmitError.shuttingDown }
            guard queue.count < limits.maxQueue else { throw SubmitError.queueFull(queue.count) }
            nextID += 1
            let handle = RequestHandle(id: nextID)
            queue.append(Slot(handle: handle, request: request, side: side, sink: sink, tokenizer: tokenizer))
            cond.signal()
            return handle
        }
    }

    /// Stops taking requests: queued ones fail now; running ones finish, or fail once `grace` seconds pass.
    /// `run()` returns when none is left.
    public func shutdown(grace: TimeInterval) {
        let refused: [Slot] = cond.withLock {
            stopping = true
            cancelAt = Date().addingTimeInterval(grace)
            defer { queue.removeAll() }
            cond.signal()
            return queue
        }
        for s in refused { s.sink(.failed(SubmitError.shuttingDown.description)) }
    }

    /// The engine loop; returns after `shutdown` once every request has left.
    public func run() {
        while true {
            cond.lock()
            while queue.isEmpty && active.isEmpty && !stopping { cond.wait() }
            if stopping && active.isEmpty { cond.unlock(); return }
            while active.count < limits.maxBatch, !queue.isEmpty { active.append(queue.removeFirst()) }
            let expired = stopping && (cancelAt.map { Date() >= $0 } ?? false)
            cond.unlock()
            if expired {
                for s in active { s.sink(.failed("the server is shutting down")) }
                cond.withLock { active.removeAll() }
                continue
            }
            step()
        }
    }

    /// One batched step over the active requests.
    private func step() {
        var running = cond.withLock { active }
        var left: [Slot] = []
        running.removeAll { s in
            if s.handle.isCancelled { left.append(s); return true }
            return false
        }
        var segments: [TunedSegment] = [], members: [Slot] = [], wantsLogits: [Bool] = []
        var budget = limits.prefillChunk, prefillRows = 0
        for s in running {
            if s.cache == nil {
                // Room for the prompt and the continuation, within the context.
                let capacity = min(limits.context, s.request.prompt.count + max(1, s.request.maxTokens))
                s.cache = base.makeCache(batch: 1, capacity: capacity)
                if let w = s.side { s.session = SideSession(inference: w, capacity: capacity) }
            }
            if s.decoding {
                segments.append(TunedSegment(ids: [s.generated.last!], cache: s.cache!, side: s.session))
                wantsLogits.append(true)
            } else {
                guard budget > 0 else { continue }
                let n = min(budget, s.request.prompt.count - s.prefilled)
                budget -= n
                prefillRows += n
                let ids = Array(s.request.prompt[s.prefilled..<(s.prefilled + n)])
                segments.append(TunedSegment(ids: ids, cache: s.cache!, side: s.session))
                s.prefilled += n
                wantsLogits.append(s.decoding)
            }
            members.append(s)
        }
        var finishedNow: [Slot] = []
        if !segments.isEmpty {
            do {
                let heads = try TunedModel.raggedStep(base: base, segments: segments)
                let rows = wantsLogits.enumerated().filter { $0.element }.map(\.offset)
                let e = base.headInputSize, V = base.vocabSize
                let gathered = FloatBuffer(count: rows.count * e)
                for (k, j) in rows.enumerated() {
                    (gathered.pointer + k * e).update(from: heads.constPointer + j * e, count: e)
                }
                let logits =
                    rows.isEmpty
                    ? FloatBuffer(count: 0) : base.raggedLogits(hidden: gathered.constPointer, rows: rows.count)
                // Each request draws from its own sampler (its own random stream), so the draws run in
                // parallel: at temperature > 0 one costs ~0.3 ms (an exponential per vocabulary entry). Each
                // slot's sampler is used in place: a copy would share its scratch and copy it on first write.
                var drawing = rows.map { members[$0] }
                var chosen = [Int32](repeating: 0, count: rows.count)
                drawing.withUnsafeMutableBufferPointer { sb in
                    chosen.withUnsafeMutableBufferPointer { cb in
                        let sp = SendablePointer(sb.baseAddress!), cp = SendablePointer(cb.baseAddress!)
                        let lp = SendableConstPointer(logits.constPointer)
                        Parallel.forRanges(rows.count) { a, b in
                            for k in a..<b { cp[k] = sp[k].sampler.next(logits: lp.base + k * V, vocab: V) }
                        }
                    }
                }
                var produced = 0
                for (k, s) in drawing.enumerated() {
                    produced += 1
                    if emit(s, chosen[k]) { finishedNow.append(s) }
                }
                cond.withLock {
                    counters.steps += 1; counters.generatedTokens += produced; counters.prefillTokens += prefillRows
                }
            } catch {
                // The caches of this step's requests may be half-written: fail them, keep serving the rest.
                for s in members { s.sink(.failed("generation failed: \(error)")) }
                finishedNow += members
            }
        }
        let gone = Set((finishedNow + left).map { ObjectIdentifier($0) })
        cond.withLock {
            active.removeAll { gone.contains(ObjectIdentifier($0)) }
            counters.completed += finishedNow.count
            counters.cancelled += left.count
        }
    }

    /// Records token `id` of `s`, sends its text; true when the request is finished.
    private func emit(_ s: Slot, _ id: Int32) -> Bool {
        s.generated.append(id)
        let r = s.request
        func finish(_ reason: String, flush: Bool) -> Bool {
            if flush {
                let rest = s.stops.push(s.decoder.finish()).text + s.stops.finish()
                if !rest.isEmpty { s.sink(.text(rest)) }
            }
            s.sink(.finished(reason: reason, promptTokens: r.prompt.count, completionTokens: s.generated.count))
            return true
        }
        if r.stopTokens.contains(id) { return finish("stop", flush: true) }
        let (text, stopped) = s.stops.push(s.decoder.push(Int(id)))
        if !text.isEmpty { s.sink(.text(text)) }
        if stopped { return finish("stop", flush: false) }
        if s.generated.count >= r.maxTokens { return finish("length", flush: true) }
        if let c = s.cache, c.length + 1 > c.capacity { return finish("length", flush: true) }
        return false
    }
}

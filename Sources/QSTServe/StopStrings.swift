/// Cuts streamed text at the first of the request's stop strings. Text that could still turn into a stop
/// string (a suffix that is a prefix of one) is held back until the next piece decides it, so a client
/// never receives the start of a stop string.
public struct StopStrings: Sendable {
    public let stops: [String]
    private var pending = ""

    public init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Adds `piece`; returns the text that is now safe to send and whether a stop string was reached (then
    /// the text ends just before it and generation should stop).
    public mutating func push(_ piece: String) -> (text: String, stopped: Bool) {
        pending += piece
        guard !stops.isEmpty else { defer { pending = "" }; return (pending, false) }
        if let cut = stops.compactMap({ pending.range(of: $0)?.lowerBound }).min() {
            defer { pending = "" }
            return (String(pending[..<cut]), true)
        }
        // Hold back the longest suffix of pending that starts some stop string.
        var keep = 0
        for s in stops {
            for n in stride(from: min(s.count - 1, pending.count), to: keep, by: -1)
            where pending.hasSuffix(String(s.prefix(n))) {
                keep = n
                break
            }
        }
        let safe = String(pending.dropLast(keep))
        pending = String(pending.suffix(keep))
        return (safe, false)
    }

    /// Whatever was held back, once generation ended for another reason.
    public mutating func finish() -> String { defer { pending = "" }; return pending }
}

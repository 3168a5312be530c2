/// How a split keeps the delimiters it found (`SplitDelimiterBehavior` of HF `tokenizers`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A stretch of text during pre-tokenization. `atOrigin` records whether it starts at offset 0 of
/// the original input, which Metaspace's `prepend_scheme: first` depends on.
struct Piece {
    var scalars: [Unicode.Scalar]
    var atOrigin: Bool
}

enum Splitting {
    /// Covers `count` scalars with alternating (range, isMatch) spans, from a list of matches.
    static func spans(count: Int, matches: [Range<Int>]) -> [(Range<Int>, Bool)] {
        var out: [(Range<Int>, Bool)] = []
        out.reserveCapacity(matches.count * 2 + 1)
        var prev = 0
        for m in matches {
            if prev != m.lowerBound { out.append((prev..<m.lowerBound, false)) }
            out.append((m, true))
            prev = m.upperBound
        }
        if prev != count { out.append((prev..<count, false)) }
        return out
    }

    /// Each scalar satisfying `predicate` is its own match.
    static func spans(_ text: [Unicode.Scalar], where predicate: (Unicode.Scalar) -> Bool) -> [(Range<Int>, Bool)] {
        var out: [(Range<Int>, Bool)] = []
        var last = 0
        for (i, s) in text.enumerated() where predicate(s) {
            if last < i { out.append((last..<i, false)) }
            out.append((i..<(i + 1), true))
            last = i + 1
        }
        if last < text.count { out.append((last..<text.count, false)) }
        return out
    }

    /// Applies a delimiter behavior to spans, giving the kept (non-empty) ranges in order.
    static func apply(_ spans: [(Range<Int>, Bool)], _ behavior: SplitBehavior) -> [Range<Int>] {
        var acc: [(Range<Int>, Bool)] = []  // (range, remove)
        acc.reserveCapacity(spans.count)
        switch behavior {
        case .isolated:
            acc = spans.map { ($0.0, false) }
        case .removed:
            acc = spans
        case .contiguous:
            var previous = false
            for (r, isMatch) in spans {
                if isMatch == previous, let last = acc.last {
                    acc[acc.count - 1] = (last.0.lowerBound..<r.upperBound, false)
                } else {
                    acc.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithPrevious:
            var previous = false
            for (r, isMatch) in spans {
                if isMatch && !previous, let last = acc.last {
                    acc[acc.count - 1] = (last.0.lowerBound..<r.upperBound, false)
                } else {
                    acc.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithNext:
            var previous = false
            for (r, isMatch) in spans.reversed() {
                if isMatch && !previous, let last = acc.last {
                    acc[acc.count - 1] = (r.lowerBound..<last.0.upperBound, false)
                } else {
                    acc.append((r, false))
                }
                previous = isMatch
            }
            acc.reverse()
        }
        return acc.compactMap { $0.1 || $0.0.isEmpty ? nil : $0.0 }
    }

    /// Splits a piece into the kept sub-pieces; only the first can still be at the origin.
    static func split(_ piece: Piece, _ spans: [(Range<Int>, Bool)], _ behavior: SplitBehavior, into out: inout [Piece])
    {
        for r in apply(spans, behavior) {
            out.append(Piece(scalars: Array(piece.scalars[r]), atOrigin: piece.atOrigin && r.lowerBound == 0))
        }
    }
}

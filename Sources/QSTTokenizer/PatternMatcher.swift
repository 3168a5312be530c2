/// A compiled pattern run by a small backtracking machine over an array of Unicode scalars, with
/// the leftmost-first (Perl/Oniguruma) semantics the reference library gets from Oniguruma.
/// Tokenizer patterns are short alternations without nested unbounded loops, so backtracking is
/// linear in practice; a step budget keeps a pathological pattern from hanging.
struct PatternMatcher: Sendable {
    private enum Instruction: Sendable {
        case set(Int)
        case split(Int, Int)  // try the first target, backtrack to the second
        case jump(Int)
        case lookahead(body: Int, negative: Bool)
        case lineStart, lineEnd, textStart, textEnd
        case match
    }

    private var program: [Instruction] = []
    private var sets: [ScalarSet] = []
    let pattern: String
    /// Set for a literal pattern, which is then searched for directly.
    private var literal: [Unicode.Scalar]?

    init(_ pattern: String) throws {
        self.pattern = pattern
        let tree = try PatternParser.parse(pattern)
        var lookaheads: [(Int, PatternNode)] = []
        emit(tree, lookaheads: &lookaheads)
        program.append(.match)
        // Lookahead bodies are separate sub-programs placed after the main one.
        while !lookaheads.isEmpty {
            let (site, body) = lookaheads.removeFirst()
            let start = program.count
            emit(body, lookaheads: &lookaheads)
            program.append(.match)
            if case .lookahead(_, let negative) = program[site] {
                program[site] = .lookahead(body: start, negative: negative)
            }
        }
    }

    /// A pattern that matches the literal text `s` (the `String` variant of a split pattern).
    init(literal s: String) throws {
        var escaped = ""
        for c in s.unicodeScalars {
            if c.isASCII, !(c.properties.isAlphabetic || c.properties.numericType != nil || c == " ") {
                escaped += "\\"
            }
            escaped.unicodeScalars.append(c)
        }
        try self.init(escaped)
        literal = Array(s.unicodeScalars)
    }

    private mutating func emit(_ node: PatternNode, lookaheads: inout [(Int, PatternNode)]) {
        switch node {
        case .set(let s):
            sets.append(s)
            program.append(.set(sets.count - 1))
        case .concat(let items):
            for item in items { emit(item, lookaheads: &lookaheads) }
        case .alternation(let branches):
            var jumpsToEnd: [Int] = []
            for (i, branch) in branches.enumerated() {
                if i < branches.count - 1 {
                    let split = program.count
                    program.append(.split(split + 1, -1))
                    emit(branch, lookaheads: &lookaheads)
                    jumpsToEnd.append(program.count)
                    program.append(.jump(-1))
                    program[split] = .split(split + 1, program.count)
                } else {
                    emit(branch, lookaheads: &lookaheads)
                }
            }
            for j in jumpsToEnd { program[j] = .jump(program.count) }
        case .repetition(let body, let minCount, let maxCount, let greedy):
            for _ in 0..<minCount { emit(body, lookaheads: &lookaheads) }
            if let maxCount {
                // Optional copies nest so that a failed copy skips all later ones.
                var exits: [Int] = []
                for _ in minCount..<maxCount {
                    exits.append(program.count)
                    program.append(.split(-1, -1))
                    emit(body, lookaheads: &lookaheads)
                }
                let end = program.count
                for e in exits {
                    program[e] = greedy ? .split(e + 1, end) : .split(end, e + 1)
                }
            } else {
                let loop = program.count
                program.append(.split(-1, -1))
                emit(body, lookaheads: &lookaheads)
                program.append(.jump(loop))
                let end = program.count
                program[loop] = greedy ? .split(loop + 1, end) : .split(end, loop + 1)
            }
        case .lookahead(let body, let negative):
            lookaheads.append((program.count, body))
            program.append(.lookahead(body: -1, negative: negative))
        case .lineStart: program.append(.lineStart)
        case .lineEnd: program.append(.lineEnd)
        case .textStart: program.append(.textStart)
        case .textEnd: program.append(.textEnd)
        }
    }

    /// The end of the match starting exactly at `start`, or nil.
    func match(_ text: [Unicode.Scalar], at start: Int) -> Int? {
        var stack: [(Int, Int)] = []
        return run(text, from: 0, at: start, stack: &stack)
    }

    private func run(_ text: [Unicode.Scalar], from entry: Int, at start: Int, stack: inout [(Int, Int)]) -> Int? {
        let base = stack.count
        defer { stack.removeSubrange(base...) }
        stack.append((entry, start))
        var budget = 1_000_000
        let n = text.count
        while stack.count > base {
            var (pc, pos) = stack.removeLast()
            thread: while true {
                budget -= 1
                if budget == 0 { return nil }
                switch program[pc] {
                case .set(let i):
                    guard pos < n, sets[i].contains(text[pos]) else { break thread }
                    pc += 1
                    pos += 1
                case .split(let first, let second):
                    stack.append((second, pos))
                    pc = first
                case .jump(let target):
                    pc = target
                case .lookahead(let body, let negative):
                    let found = run(text, from: body, at: pos, stack: &stack) != nil
                    guard found != negative else { break thread }
                    pc += 1
                case .lineStart:
                    guard pos == 0 || text[pos - 1] == "\n" else { break thread }
                    pc += 1
                case .lineEnd:
                    guard pos == n || text[pos] == "\n" else { break thread }
                    pc += 1
                case .textStart:
                    guard pos == 0 else { break thread }
                    pc += 1
                case .textEnd:
                    guard pos == n else { break thread }
                    pc += 1
                case .match:
                    return pos
                }
            }
        }
        return nil
    }

    /// All non-overlapping matches, leftmost first, as `find_iter` reports them. An empty match
    /// is reported and the search moves on by one scalar.
    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        if let literal, let first = literal.first {
            return literalMatches(literal, first: first, in: text)
        }
        var result: [Range<Int>] = []
        var stack: [(Int, Int)] = []
        stack.reserveCapacity(64)
        var pos = 0
        while pos <= text.count {
            if let end = run(text, from: 0, at: pos, stack: &stack) {
                result.append(pos..<end)
                pos = end > pos ? end : pos + 1
            } else {
                pos += 1
            }
        }
        return result
    }

    private func literalMatches(_ literal: [Unicode.Scalar], first: Unicode.Scalar, in text: [Unicode.Scalar])
        -> [Range<Int>]
    {
        var result: [Range<Int>] = []
        let m = literal.count
        var i = 0
        while i + m <= text.count {
            if text[i] == first, m == 1 || text[(i + 1)..<(i + m)].elementsEqual(literal[1...]) {
                result.append(i..<(i + m))
                i += m
            } else {
                i += 1
            }
        }
        return result
    }
}

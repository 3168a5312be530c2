/// Parses the Oniguruma-flavoured regular expressions found in `tokenizer.json` (pre-tokenizer
/// splits, Replace normalizers) into a small syntax tree. It covers what tokenizer patterns use:
/// alternation, groups with `(?i:...)`, classes with `\p{..}`, counted and lazy quantifiers, and
/// lookahead. Anything else is rejected with an error instead of being matched differently.
indirect enum PatternNode: Sendable {
    case set(ScalarSet)
    case concat([PatternNode])
    case alternation([PatternNode])
    case repetition(PatternNode, min: Int, max: Int?, greedy: Bool)
    case lookahead(PatternNode, negative: Bool)
    case lineStart, lineEnd, textStart, textEnd
}

struct PatternParser {
    private let scalars: [Unicode.Scalar]
    private var pos = 0
    private var caseInsensitive = false
    private let source: String

    static func parse(_ pattern: String) throws -> PatternNode {
        var parser = PatternParser(pattern)
        let node = try parser.parseAlternation()
        if parser.pos < parser.scalars.count {
            throw parser.failure("unbalanced ')'")
        }
        return node
    }

    private init(_ pattern: String) {
        source = pattern
        scalars = Array(pattern.unicodeScalars)
    }

    private func failure(_ what: String) -> QSTError {
        QSTError("regex '\(source)': \(what) at offset \(pos)", kind: .invalidPattern)
    }

    private var atEnd: Bool { pos >= scalars.count }
    private func peek(_ ahead: Int = 0) -> Unicode.Scalar? {
        pos + ahead < scalars.count ? scalars[pos + ahead] : nil
    }

    private mutating func parseAlternation() throws -> PatternNode {
        var branches = [try parseConcat()]
        while peek() == "|" {
            pos += 1
            branches.append(try parseConcat())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    private mutating func parseConcat() throws -> PatternNode {
        var items: [PatternNode] = []
        let savedCase = caseInsensitive
        defer { caseInsensitive = savedCase }
        while let c = peek(), c != "|", c != ")" {
            // An inline `(?i)` switches the flag for the rest of this group.
            if c == "(", peek(1) == "?", peek(2) == "i", peek(3) == ")" {
                pos += 4
                caseInsensitive = true
                continue
            }
            var atom = try parseAtom()
            atom = try parseQuantifiers(atom)
            items.append(atom)
        }
        return items.count == 1 ? items[0] : .concat(items)
    }

    private mutating func parseQuantifiers(_ atom: PatternNode) throws -> PatternNode {
        var node = atom
        while let c = peek() {
            var minCount = 0
            var maxCount: Int?
            switch c {
            case "*": pos += 1
            case "+": pos += 1; minCount = 1
            case "?": pos += 1; maxCount = 1
            case "{":
                guard let (lo, hi) = parseBraces() else { return node }
                minCount = lo
                maxCount = hi
            default: return node
            }
            var greedy = true
            if peek() == "?" { pos += 1; greedy = false } else if peek() == "+" { pos += 1 }
            node = .repetition(node, min: minCount, max: maxCount, greedy: greedy)
        }
        return node
    }

    /// `{n}`, `{n,}`, `{n,m}`; anything else leaves `{` to be read as a literal.
    private mutating func parseBraces() -> (Int, Int?)? {
        var i = pos + 1
        func number() -> Int? {
            var value: Int?
            while i < scalars.count, let d = Int(String(scalars[i])), scalars[i].isASCII {
                value = (value ?? 0) * 10 + d
                i += 1
            }
            return value
        }
        guard let lo = number() else { return nil }
        var hi: Int? = lo
        if i < scalars.count, scalars[i] == "," {
            i += 1
            hi = number()
        }
        guard i < scalars.count, scalars[i] == "}" else { return nil }
        if let h = hi, h < lo { return nil }
        pos = i + 1
        return (lo, hi)
    }

    private mutating func parseAtom() throws -> PatternNode {
        guard let c = peek() else { throw failure("unexpected end") }
        pos += 1
        switch c {
        case "(": return try parseGroup()
        case "[": return .set(try parseClass())
        case ".": return .set(ScalarSet(items: [.range(0x0A, 0x0A)], negated: true))
        case "^": return .lineStart
        case "$": return .lineEnd
        case "\\":
            if let anchor = parseAnchorEscape() { return anchor }
            return .set(try parseEscapeSet())
        default: return .set(literal(c))
        }
    }

    private mutating func parseAnchorEscape() -> PatternNode? {
        switch peek() {
        case "A": pos += 1; return .textStart
        case "z", "Z": pos += 1; return .textEnd
        default: return nil
        }
    }

    private func literal(_ c: Unicode.Scalar) -> ScalarSet {
        let variants = caseInsensitive ? ScalarSet.caseVariants(of: c) : [c]
        return ScalarSet(items: variants.map { .range($0.value, $0.value) })
    }

    private mutating func parseGroup() throws -> PatternNode {
        var lookahead: Bool?
        let savedCase = caseInsensitive
        defer { caseInsensitive = savedCase }
        if peek() == "?" {
            pos += 1
            switch peek() {
            case ":": pos += 1
            case "=": pos += 1; lookahead = false
            case "!": pos += 1; lookahead = true
            case "<" where peek(1) == "=" || peek(1) == "!":
                throw failure("lookbehind is not supported")
            case "<", "P":
                // Named group: skip the name, keep the contents.
                while let c = peek(), c != ">" { pos += 1 }
                pos += 1
            case "i":
                pos += 1
                guard peek() == ":" else { throw failure("unsupported group flags") }
                pos += 1
                caseInsensitive = true
            default: throw failure("unsupported group syntax")
            }
        }
        let inner = try parseAlternation()
        guard peek() == ")" else { throw failure("missing ')'") }
        pos += 1
        if let negative = lookahead { return .lookahead(inner, negative: negative) }
        return .concat([inner])
    }

    private mutating func parseClass() throws -> ScalarSet {
        var set = ScalarSet()
        if peek() == "^" { pos += 1; set.negated = true }
        var first = true
        while true {
            guard let c = peek() else { throw failure("missing ']'") }
            if c == "]" && !first { pos += 1; break }
            first = false
            if c == "[" { throw failure("nested classes are not supported") }
            pos += 1
            var low: Unicode.Scalar = c
            if c == "\\" {
                guard let e = peek() else { throw failure("dangling '\\'") }
                if let scalar = try simpleEscape(e) {
                    low = scalar
                } else {
                    for item in try parseEscapeSet().itemsForUnion() { set.add(item) }
                    continue
                }
            }
            if peek() == "-", let next = peek(1), next != "]" {
                pos += 1
                var high = next
                pos += 1
                if next == "\\" {
                    guard let e = peek(), let scalar = try simpleEscape(e) else { throw failure("bad range end") }
                    high = scalar
                }
                guard high.value >= low.value else { throw failure("reversed range") }
                set.add(.range(low.value, high.value))
                if caseInsensitive { addCaseVariants(of: low, to: high, into: &set) }
            } else {
                for v in (caseInsensitive ? ScalarSet.caseVariants(of: low) : [low]) {
                    set.add(.range(v.value, v.value))
                }
            }
        }
        return set
    }

    private func addCaseVariants(of low: Unicode.Scalar, to high: Unicode.Scalar, into set: inout ScalarSet) {
        guard high.value - low.value < 512 else { return }
        for v in low.value...high.value {
            guard let s = Unicode.Scalar(v) else { continue }
            for variant in ScalarSet.caseVariants(of: s).dropFirst() { set.add(.range(variant.value, variant.value)) }
        }
    }

    /// A backslash escape that stands for one scalar (`\n`, `\x41`, `\.`), consuming it; nil when
    /// it is a class escape such as `\s` or `\p{L}` (then nothing is consumed).
    private mutating func simpleEscape(_ e: Unicode.Scalar) throws -> Unicode.Scalar? {
        switch e {
        case "s", "S", "d", "D", "w", "W", "p", "P", "h", "H": return nil
        case "n": pos += 1; return "\n"
        case "r": pos += 1; return "\r"
        case "t": pos += 1; return "\t"
        case "f": pos += 1; return "\u{0C}"
        case "v": pos += 1; return "\u{0B}"
        case "a": pos += 1; return "\u{07}"
        case "e": pos += 1; return "\u{1B}"
        case "0": pos += 1; return "\u{00}"
        case "x", "u":
            pos += 1
            var digits = ""
            if peek() == "{" {
                pos += 1
                while let c = peek(), c != "}" { digits.unicodeScalars.append(c); pos += 1 }
                pos += 1
            } else {
                let count = e == "x" ? 2 : 4
                for _ in 0..<count {
                    guard let c = peek() else { break }
                    digits.unicodeScalars.append(c)
                    pos += 1
                }
            }
            guard let v = UInt32(digits, radix: 16), let s = Unicode.Scalar(v) else {
                throw failure("bad hex escape")
            }
            return s
        case "b", "B", "G", "K", "R", "X", "k", "g":
            throw failure("escape '\\\(e)' is not supported")
        default:
            pos += 1
            return e
        }
    }

    /// Reads the escape after a backslash as a set (class escapes and single scalars alike).
    private mutating func parseEscapeSet() throws -> ScalarSet {
        guard let e = peek() else { throw failure("dangling '\\'") }
        if let scalar = try simpleEscape(e) { return literal(scalar) }
        pos += 1
        switch e {
        case "s", "S": return ScalarSet(items: [.property(.whitespace, negated: e == "S")])
        case "d", "D": return ScalarSet(items: [.property(.digit, negated: e == "D")])
        case "w", "W": return ScalarSet(items: [.property(.word, negated: e == "W")])
        case "h", "H":
            return ScalarSet(items: [.range(0x30, 0x39), .range(0x41, 0x46), .range(0x61, 0x66)], negated: e == "H")
        default:
            var negated = e == "P"
            var name = ""
            if peek() == "{" {
                pos += 1
                if peek() == "^" { negated.toggle(); pos += 1 }
                while let c = peek(), c != "}" { name.unicodeScalars.append(c); pos += 1 }
                guard peek() == "}" else { throw failure("missing '}'") }
                pos += 1
            } else if let c = peek() {
                name.unicodeScalars.append(c)
                pos += 1
            }
            guard let property = UnicodeProperty(name: name) else { throw failure("unknown property '\(name)'") }
            return ScalarSet(items: [.property(property, negated: negated)])
        }
    }
}

extension ScalarSet {
    /// Items whose union equals this set, for merging an escape like `\S` into a bracket class.
    func itemsForUnion() -> [Item] {
        guard negated else { return items }
        if items.count == 1, case .property(let p, let neg) = items[0] { return [.property(p, negated: !neg)] }
        // A negated multi-item set (rare) becomes its complement ranges over the scalar space.
        var out: [Item] = []
        var start: UInt32 = 0
        var v: UInt32 = 0
        while v <= 0x10FFFF {
            let inside = Unicode.Scalar(v).map { contains($0) } ?? false
            if !inside {
                if v > start { out.append(.range(start, v - 1)) }
                start = v + 1
            }
            v += 1
        }
        if start <= 0x10FFFF { out.append(.range(start, 0x10FFFF)) }
        return out
    }
}

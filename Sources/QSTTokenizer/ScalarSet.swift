/// One character class of a pattern (`[^\s\p{L}]`, `\p{N}`, a literal, `.`): a 128-bit table for
/// ASCII, which is nearly all text, and a list of ranges and properties for everything else.
struct ScalarSet: Sendable {
    enum Item: Sendable {
        case range(UInt32, UInt32)
        case property(UnicodeProperty, negated: Bool)
    }

    private(set) var items: [Item] = []
    var negated = false
    private var asciiLow: UInt64 = 0
    private var asciiHigh: UInt64 = 0

    init(items: [Item] = [], negated: Bool = false) {
        self.items = items
        self.negated = negated
        rebuildASCII()
    }

    mutating func add(_ item: Item) {
        items.append(item)
        rebuildASCII()
    }

    private mutating func rebuildASCII() {
        asciiLow = 0
        asciiHigh = 0
        for v in UInt32(0)..<128 where slowContains(Unicode.Scalar(v)!) {
            if v < 64 { asciiLow |= 1 << UInt64(v) } else { asciiHigh |= 1 << UInt64(v - 64) }
        }
    }

    private func slowContains(_ s: Unicode.Scalar) -> Bool {
        var hit = false
        for item in items {
            switch item {
            case .range(let lo, let hi): hit = s.value >= lo && s.value <= hi
            case .property(let p, let neg): hit = p.contains(s) != neg
            }
            if hit { break }
        }
        return hit != negated
    }

    @inline(__always) func contains(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 64 { return asciiLow & (1 << UInt64(v)) != 0 }
        if v < 128 { return asciiHigh & (1 << UInt64(v - 64)) != 0 }
        return slowContains(s)
    }

    /// The scalars a case-insensitive match of `s` accepts: simple case mappings plus the two
    /// ASCII letters whose Unicode case folding has an extra non-ASCII member (ſ, K).
    static func caseVariants(of s: Unicode.Scalar) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = [s]
        for mapped in [s.properties.lowercaseMapping, s.properties.uppercaseMapping] {
            let scalars = Array(mapped.unicodeScalars)
            if scalars.count == 1, !out.contains(scalars[0]) { out.append(scalars[0]) }
        }
        switch s.value | 0x20 {
        case 0x73 where s.value < 0x80: out.append("\u{017F}")
        case 0x6B where s.value < 0x80: out.append("\u{212A}")
        default: break
        }
        return out
    }
}

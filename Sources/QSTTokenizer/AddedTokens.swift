/// One entry of `added_tokens` in tokenizer.json.
struct AddedToken: Sendable {
    let id: Int
    let content: String
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
    let special: Bool

    init(_ json: JSONObject) throws {
        id = try json.int("id")
        content = try json.string("content")
        singleWord = json.bool("single_word", default: false)
        lstrip = json.bool("lstrip", default: false)
        rstrip = json.bool("rstrip", default: false)
        special = json.bool("special", default: false)
        normalized = json.bool("normalized", default: !special)
    }
}

/// A stretch of input: either an added token already resolved to its id, or text still to encode.
enum Segment {
    case token(Int)
    case text(Piece)
}

/// Finds added tokens in text the way HF `tokenizers` does: leftmost-longest matching, then the
/// token's `single_word`, `lstrip` and `rstrip` flags decide whether it counts and what
/// surrounding whitespace it swallows.
struct AddedTokenSplitter: Sendable {
    private struct Entry: Sendable {
        let scalars: [Unicode.Scalar]
        let token: AddedToken
    }

    /// Candidates by first scalar, longest first.
    private let byFirst: [UInt32: [Entry]]
    var isEmpty: Bool { byFirst.isEmpty }

    /// `patterns` pairs each token with the text to look for (its content, normalized when the
    /// token is matched after normalization).
    init(_ patterns: [(AddedToken, [Unicode.Scalar])]) {
        var byFirst: [UInt32: [Entry]] = [:]
        for (token, scalars) in patterns {
            guard let first = scalars.first else { continue }
            byFirst[first.value, default: []].append(Entry(scalars: scalars, token: token))
        }
        for key in byFirst.keys { byFirst[key]!.sort { $0.scalars.count > $1.scalars.count } }
        self.byFirst = byFirst
    }

    /// Splits `piece` into resolved tokens and text in between (empty text is dropped).
    func split(_ piece: Piece) -> [Segment] {
        let text = piece.scalars
        guard !byFirst.isEmpty else { return text.isEmpty ? [] : [.text(piece)] }
        var out: [Segment] = []
        var start = 0  // end of the last consumed region
        var i = 0
        let n = text.count
        func emitText(_ lo: Int, _ hi: Int) {
            if lo < hi { out.append(.text(Piece(scalars: Array(text[lo..<hi]), atOrigin: piece.atOrigin && lo == 0))) }
        }
        while i < n {
            guard let candidates = byFirst[text[i].value],
                let entry = candidates.first(where: { matches($0.scalars, text, at: i) })
            else {
                i += 1
                continue
            }
            var lo = i
            var hi = i + entry.scalars.count
            let token = entry.token
            if token.singleWord {
                let startsWord = lo > 0 && Self.isWordScalar(text[lo - 1])
                let endsWord = hi < n && Self.isWordScalar(text[hi])
                if startsWord || endsWord {
                    i = hi  // the matcher's iteration resumes after the rejected match
                    continue
                }
            }
            if token.lstrip {
                while lo > start, text[lo - 1].isWhiteSpace { lo -= 1 }
            }
            if token.rstrip {
                while hi < n, text[hi].isWhiteSpace { hi += 1 }
            }
            emitText(start, lo)
            out.append(.token(token.id))
            start = hi
            i = hi
        }
        emitText(start, n)
        return out
    }

    private func matches(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for k in 0..<pattern.count where text[i + k] != pattern[k] { return false }
        return true
    }

    private static func isWordScalar(_ s: Unicode.Scalar) -> Bool {
        s.isLetter || s.isNumber || s == "_"
    }
}

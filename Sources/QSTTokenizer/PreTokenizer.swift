/// The `pre_tokenizer` section of tokenizer.json: cuts normalized text into words that the model
/// encodes independently (and that can therefore be cached).
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, regex: PatternMatcher?)
    case split(PatternMatcher, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme, split: Bool)
    case whitespaceSplit
    case punctuation(SplitBehavior)

    enum PrependScheme: String, Sendable { case always, first, never }

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    static func parse(_ json: JSONObject) throws -> PreTokenizer {
        switch try json.type() {
        case "Sequence":
            return .sequence(try json.objects("pretokenizers").map(parse))
        case "ByteLevel":
            return .byteLevel(
                addPrefixSpace: json.bool("add_prefix_space", default: true),
                regex: json.bool("use_regex", default: true) ? try PatternMatcher(gpt2Pattern) : nil)
        case "Split":
            let behavior = try parseBehavior(json, "behavior")
            return .split(
                try parsePattern(json.object("pattern")), behavior, invert: json.bool("invert", default: false))
        case "Digits":
            return .digits(individual: json.bool("individual_digits", default: false))
        case "Metaspace":
            let replacement = (json.optionalString("replacement") ?? "▁").unicodeScalars
            guard replacement.count == 1, let r = replacement.first else {
                throw QSTError.tokenizerField(json.file, json.sub("replacement"), "expected one character")
            }
            var scheme = PrependScheme.always
            if let name = json.optionalString("prepend_scheme") {
                guard let s = PrependScheme(rawValue: name) else {
                    throw QSTError.tokenizerField(json.file, json.sub("prepend_scheme"), "unknown scheme '\(name)'")
                }
                scheme = s
            } else if json.has("add_prefix_space") {
                scheme = json.bool("add_prefix_space", default: true) ? .always : .never
            }
            return .metaspace(replacement: r, prepend: scheme, split: json.bool("split", default: true))
        case "WhitespaceSplit":
            return .whitespaceSplit
        case "Whitespace":
            return .split(try PatternMatcher(#"\w+|[^\w\s]+"#), .removed, invert: true)
        case "Punctuation":
            return .punctuation(json.has("behavior") ? try parseBehavior(json, "behavior") : .isolated)
        case let other:
            throw json.unsupported("pre_tokenizer type '\(other)'")
        }
    }

    private static func parseBehavior(_ json: JSONObject, _ key: String) throws -> SplitBehavior {
        let name = try json.string(key)
        guard let b = SplitBehavior(rawValue: name) else {
            throw QSTError.tokenizerField(json.file, json.sub(key), "unknown behavior '\(name)'")
        }
        return b
    }

    func apply(_ pieces: [Piece]) -> [Piece] {
        var out: [Piece] = []
        out.reserveCapacity(pieces.count * 4)
        switch self {
        case .sequence(let items):
            return items.reduce(pieces) { $1.apply($0) }
        case .byteLevel(let addPrefixSpace, let regex):
            for var piece in pieces {
                if addPrefixSpace && piece.scalars.first != " " { piece.scalars.insert(" ", at: 0) }
                if let regex {
                    let spans = Splitting.spans(count: piece.scalars.count, matches: regex.matches(in: piece.scalars))
                    Splitting.split(piece, spans, .isolated, into: &out)
                } else if !piece.scalars.isEmpty {
                    out.append(piece)
                }
            }
            for i in out.indices { out[i].scalars = ByteLevelAlphabet.encode(out[i].scalars[...]) }
        case .split(let pattern, let behavior, let invert):
            for piece in pieces {
                var spans = Splitting.spans(count: piece.scalars.count, matches: pattern.matches(in: piece.scalars))
                if invert { spans = spans.map { ($0.0, !$0.1) } }
                Splitting.split(piece, spans, behavior, into: &out)
            }
        case .digits(let individual):
            for piece in pieces {
                let spans = Splitting.spans(piece.scalars) { $0.isNumber }
                Splitting.split(piece, spans, individual ? .isolated : .contiguous, into: &out)
            }
        case .metaspace(let replacement, let scheme, let split):
            for var piece in pieces {
                for i in piece.scalars.indices where piece.scalars[i] == " " { piece.scalars[i] = replacement }
                let prepend: Bool
                switch scheme {
                case .always: prepend = piece.scalars.first != replacement
                case .first: prepend = piece.scalars.first != replacement && piece.atOrigin
                case .never: prepend = false
                }
                if prepend { piece.scalars.insert(replacement, at: 0) }
                if split {
                    let spans = Splitting.spans(piece.scalars) { $0 == replacement }
                    Splitting.split(piece, spans, .mergedWithNext, into: &out)
                } else if !piece.scalars.isEmpty {
                    out.append(piece)
                }
            }
        case .whitespaceSplit:
            for piece in pieces {
                Splitting.split(piece, Splitting.spans(piece.scalars) { $0.isWhiteSpace }, .removed, into: &out)
            }
        case .punctuation(let behavior):
            for piece in pieces {
                let spans = Splitting.spans(piece.scalars) {
                    $0.isASCIIPunctuation || UnicodeProperty.punctuation.contains($0)
                }
                Splitting.split(piece, spans, behavior, into: &out)
            }
        }
        return out
    }
}

extension Unicode.Scalar {
    /// Rust's `char::is_ascii_punctuation`.
    var isASCIIPunctuation: Bool {
        (0x21...0x2F).contains(value) || (0x3A...0x40).contains(value) || (0x5B...0x60).contains(value)
            || (0x7B...0x7E).contains(value)
    }
}

import Foundation

/// The `post_processor` section of tokenizer.json, reduced to what it does to the ids of a single
/// sequence when special tokens are requested (e.g. a leading `<s>`).
indirect enum PostProcessor: Sendable {
    case sequence([PostProcessor])
    case template([TemplateItem])
    case wrap(prefix: [Int], suffix: [Int])
    case none

    enum TemplateItem: Sendable {
        case sequence
        case special([Int])
    }

    static func parse(_ json: JSONObject) throws -> PostProcessor {
        switch try json.type() {
        case "Sequence":
            return .sequence(try json.objects("processors").map(parse))
        case "TemplateProcessing":
            let specials = try json.object("special_tokens")
            var items: [TemplateItem] = []
            for (i, raw) in try json.array("single").enumerated() {
                let item = try JSONObject(file: json.file, path: json.sub("single[\(i)]"), raw)
                if item.has("Sequence") {
                    items.append(.sequence)
                } else {
                    let special = try item.object("SpecialToken")
                    let name = try special.string("id")
                    let entry = try specials.object(name)
                    let ids = try entry.array("ids").map { value -> Int in
                        guard let n = (value as? NSNumber)?.intValue else {
                            throw QSTError.tokenizerField(json.file, entry.sub("ids"), "expected integers")
                        }
                        return n
                    }
                    items.append(.special(ids))
                }
            }
            return .template(items)
        case "RobertaProcessing", "BertProcessing":
            func idOf(_ key: String) throws -> Int {
                let pair = try json.array(key)
                guard pair.count == 2, let id = (pair[1] as? NSNumber)?.intValue else {
                    throw QSTError.tokenizerField(json.file, json.sub(key), "expected [token, id]")
                }
                return id
            }
            return .wrap(prefix: [try idOf("cls")], suffix: [try idOf("sep")])
        case "ByteLevel":
            return .none  // only adjusts offsets
        case let other:
            throw json.unsupported("post_processor type '\(other)'")
        }
    }

    func apply(_ ids: [Int]) -> [Int] {
        switch self {
        case .sequence(let items): return items.reduce(ids) { $1.apply($0) }
        case .template(let items):
            var out: [Int] = []
            out.reserveCapacity(ids.count + 4)
            for item in items {
                switch item {
                case .sequence: out.append(contentsOf: ids)
                case .special(let s): out.append(contentsOf: s)
                }
            }
            return out
        case .wrap(let prefix, let suffix): return prefix + ids + suffix
        case .none: return ids
        }
    }
}

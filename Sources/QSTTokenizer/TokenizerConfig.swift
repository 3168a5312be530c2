import Foundation

/// The fields of tokenizer_config.json the tokenizer uses.
struct TokenizerConfig: Sendable {
    var bosToken: String?
    var eosToken: String?
    var padToken: String?
    var chatTemplate: String?

    init() {}

    init(_ data: Data) throws {
        let json = try JSONObject.parse(data, file: "tokenizer_config.json")
        bosToken = Self.tokenString(json.dict["bos_token"])
        eosToken = Self.tokenString(json.dict["eos_token"])
        padToken = Self.tokenString(json.dict["pad_token"])
        if let template = json.dict["chat_template"] as? String {
            chatTemplate = template
        } else if let named = json.dict["chat_template"] as? [[String: Any]] {
            // A list of named templates: the one called "default", else the first.
            let pick = named.first { ($0["name"] as? String) == "default" } ?? named.first
            chatTemplate = pick?["template"] as? String
        }
    }

    /// A token given as a plain string or as an AddedToken object with `content`.
    private static func tokenString(_ value: Any?) -> String? {
        if let s = value as? String { return s }
        if let d = value as? [String: Any] { return d["content"] as? String }
        return nil
    }
}

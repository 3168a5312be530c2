import Foundation

/// A Hugging Face `tokenizer.json` tokenizer (BPE models: byte-level as in GPT-2, SmolLM2, Llama 3,
/// Qwen2, and SentencePiece-style with byte fallback as in Llama 2, Mistral) that produces the
/// same ids as the HF `tokenizers` library.
public final class Tokenizer: Sendable {
    /// Number of rows an embedding needs: one more than the largest id of the vocabulary and the
    /// added tokens.
    public let vocabSize: Int
    public let bosID: Int?
    public let eosID: Int?
    public let padID: Int?
    /// The recognised chat template of tokenizer_config.json, nil when there is none or it is not
    /// recognised (`chatFormatError` then says why).
    public let chatFormat: ChatFormat?
    public let chatFormatError: QSTError?

    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let model: BPEModel
    private let postProcessor: PostProcessor?
    private let decoder: TokenDecoder?
    private let rawSplitter: AddedTokenSplitter
    private let normalizedSplitter: AddedTokenSplitter
    private let idToToken: [Int: String]
    private let tokenToID: [String: Int]
    private let specialIDs: Set<Int>
    private let cache = WordCache()
    private let configValues: TokenizerConfig

    public init(tokenizerJSON: Data, configJSON: Data?) throws {
        let file = "tokenizer.json"
        let root = try JSONObject.parse(tokenizerJSON, file: file)
        let modelJSON = try root.object("model")
        let modelType = modelJSON.optionalString("type") ?? "BPE"
        guard modelType == "BPE" else { throw modelJSON.unsupported("model type '\(modelType)'") }
        model = try BPEModel(modelJSON)
        let normalizer = try root.optionalObject("normalizer").map(Normalizer.parse)
        self.normalizer = normalizer
        preTokenizer = try root.optionalObject("pre_tokenizer").map(PreTokenizer.parse)
        postProcessor = try root.optionalObject("post_processor").map(PostProcessor.parse)
        decoder = try root.optionalObject("decoder").map(TokenDecoder.parse)

        let added = root.has("added_tokens") ? try root.objects("added_tokens").map(AddedToken.init) : []
        var idToToken: [Int: String] = [:]
        idToToken.reserveCapacity(model.vocab.count + added.count)
        for (token, id) in model.vocab { idToToken[id] = token }
        var tokenToID = model.vocab
        var specialIDs = Set<Int>()
        for token in added {
            // HF keeps the normalized form of a normalized added token as its string.
            if token.normalized, let normalizer {
                var s = String()
                s.unicodeScalars.append(contentsOf: normalizer.apply(Array(token.content.unicodeScalars)))
                idToToken[token.id] = s
            } else {
                idToToken[token.id] = token.content
            }
            tokenToID[token.content] = token.id
            if token.special { specialIDs.insert(token.id) }
        }
        self.idToToken = idToToken
        self.tokenToID = tokenToID
        self.specialIDs = specialIDs
        vocabSize = (idToToken.keys.max() ?? -1) + 1

        rawSplitter = AddedTokenSplitter(added.filter { !$0.normalized }.map { ($0, Array($0.content.unicodeScalars)) })
        normalizedSplitter = AddedTokenSplitter(
            added.filter { $0.normalized }.map { token in
                let scalars = Array(token.content.unicodeScalars)
                return (token, normalizer?.apply(scalars) ?? scalars)
            })

        let config = try configJSON.map { try TokenizerConfig($0) } ?? TokenizerConfig()
        configValues = config
        bosID = config.bosToken.flatMap { tokenToID[$0] }
        eosID = config.eosToken.flatMap { tokenToID[$0] }
        padID = config.padToken.flatMap { tokenToID[$0] }
        if let template = config.chatTemplate {
            do {
                chatFormat = try ChatFormat(
                    template: template, bosToken: config.bosToken ?? "", eosToken: config.eosToken ?? "")
                chatFormatError = nil
            } catch let error as QSTError {
                chatFormat = nil
                chatFormatError = error
            }
        } else {
            chatFormat = nil
            chatFormatError = QSTError.tokenizerField(
                "tokenizer_config.json", "chat_template",
                "missing; pass --chat-format chatml|llama2|llama3|mistral", kind: .unknownChatFormat)
        }
    }

    /// Reads `tokenizer.json` and, if present, `tokenizer_config.json` from a model folder.
    public convenience init(folder: URL) throws {
        let tokenizerURL = folder.appendingPathComponent("tokenizer.json")
        let data: Data
        do {
            data = try Data(contentsOf: tokenizerURL)
        } catch {
            throw QSTError("\(tokenizerURL.path): cannot read (\(error.localizedDescription))", kind: .unreadableFile)
        }
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        let config = FileManager.default.fileExists(atPath: configURL.path) ? try? Data(contentsOf: configURL) : nil
        try self.init(tokenizerJSON: data, configJSON: config)
    }

    /// The chat format to use: the named override (`chatml`, `llama2`, `llama3`, `mistral`) or the
    /// recognised template; throws a one-line error naming the field otherwise.
    public func chatFormat(override name: String?) throws -> ChatFormat {
        if let name {
            return try ChatFormat(
                name: name, bosToken: configValues.bosToken ?? "", eosToken: configValues.eosToken ?? "",
                defaultSystemPrompt: chatFormat?.defaultSystemPrompt)
        }
        if let chatFormat { return chatFormat }
        throw chatFormatError ?? QSTError("tokenizer_config.json: no chat format", kind: .unknownChatFormat)
    }

    /// The id of a token of the vocabulary or the added tokens.
    public func tokenID(_ token: String) -> Int? { tokenToID[token] }

    /// The token string of an id.
    public func token(_ id: Int) -> String? { idToToken[id] }

    /// Ids that end generation for the chat format (its end tokens) and the EOS token.
    public func stopTokenIDs(for format: ChatFormat?) -> Set<Int> {
        var ids = Set((format?.endTokens ?? []).compactMap { tokenToID[$0] })
        if let eosID { ids.insert(eosID) }
        return ids
    }

    public func isSpecial(_ id: Int) -> Bool { specialIDs.contains(id) }

    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        for segment in rawSplitter.split(Piece(scalars: Array(text.unicodeScalars), atOrigin: true)) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(var piece):
                if let normalizer { piece.scalars = normalizer.apply(piece.scalars) }
                for inner in normalizedSplitter.split(piece) {
                    switch inner {
                    case .token(let id): ids.append(id)
                    case .text(let p): encodeText(p, into: &ids)
                    }
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.apply(ids) }
        return ids
    }

    private func encodeText(_ piece: Piece, into ids: inout [Int]) {
        let words = preTokenizer?.apply([piece]) ?? [piece]
        for word in words {
            let cacheable = word.scalars.count <= 64
            if cacheable, let cached = cache.get(word.scalars) {
                for id in cached { ids.append(Int(id)) }
                continue
            }
            let encoded = model.encode(word.scalars)
            if cacheable { cache.set(word.scalars, encoded) }
            for id in encoded { ids.append(Int(id)) }
        }
    }

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = idToToken[id] else { continue }
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}

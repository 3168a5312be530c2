import Foundation
import QSTTokenizer

/// A byte-level tokenizer.json whose vocabulary has the model's size: the 256 byte tokens
/// (GPT-2's printable alphabet), `<s>` and `</s>`, then unused fillers. Every text encodes to
/// one token per byte, which is all a speed benchmark needs.
enum SyntheticTokenizer {
    static func json(vocab: Int) throws -> (tokenizer: Data, config: Data) {
        var entries: [String: Int] = ["<unk>": 0, "<s>": 1, "</s>": 2]
        for b in 0..<256 { entries[String(Character(ByteLevelAlphabet.byteToScalar[b]))] = 3 + b }
        for i in (259..<max(vocab, 259)) { entries["<unused_\(i)>"] = i }
        let special: [[String: Any]] = [(0, "<unk>"), (1, "<s>"), (2, "</s>")].map { id, t in
            [
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false,
                "special": true,
            ]
        }
        let tokenizer: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": special,
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": NSNull(),
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": entries, "merges": [String](),
            ],
        ]
        let config: [String: Any] = [
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "model_max_length": 4096, "tokenizer_class": "PreTrainedTokenizerFast",
        ]
        return (
            try JSONSerialization.data(withJSONObject: tokenizer, options: [.sortedKeys]),
            try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])
        )
    }
}

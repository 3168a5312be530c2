import Foundation

/// The `model` section of tokenizer.json for `"type": "BPE"`: vocabulary, merge ranks, and the
/// per-word merge loop (lowest rank first, leftmost on ties, exactly as HF `tokenizers` does).
struct BPEModel: Sendable {
    private struct Merge: Sendable {
        var rank: Int32
        var id: Int32
    }

    let vocab: [String: Int]
    let unkID: Int?
    let byteFallback: Bool
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String?
    let endOfWordSuffix: String?
    private let merges: [UInt64: Merge]
    /// Ids of one-scalar tokens, the starting symbols of nearly every word.
    private let scalarIDs: [UInt32: Int32]
    /// `<0xNN>` token ids for byte fallback, -1 where absent.
    private let byteIDs: [Int32]

    init(_ json: JSONObject) throws {
        let vocabJSON = try json.object("vocab")
        var vocab: [String: Int] = [:]
        vocab.reserveCapacity(vocabJSON.dict.count)
        for (token, value) in vocabJSON.dict {
            guard let id = (value as? NSNumber)?.intValue, id >= 0 else {
                throw QSTError.tokenizerField(json.file, json.sub("vocab.\(token)"), "expected a non-negative id")
            }
            vocab[token] = id
        }
        self.vocab = vocab
        if let unk = json.optionalString("unk_token") {
            guard let id = vocab[unk] else {
                throw QSTError.tokenizerField(json.file, json.sub("unk_token"), "'\(unk)' is not in the vocabulary")
            }
            unkID = id
        } else {
            unkID = nil
        }
        byteFallback = json.bool("byte_fallback", default: false)
        fuseUnknown = json.bool("fuse_unk", default: false)
        ignoreMerges = json.bool("ignore_merges", default: false)
        continuingSubwordPrefix = json.optionalString("continuing_subword_prefix").flatMap { $0.isEmpty ? nil : $0 }
        endOfWordSuffix = json.optionalString("end_of_word_suffix").flatMap { $0.isEmpty ? nil : $0 }

        var scalarIDs: [UInt32: Int32] = [:]
        for (token, id) in vocab {
            let scalars = token.unicodeScalars
            if scalars.count == 1, let s = scalars.first { scalarIDs[s.value] = Int32(id) }
        }
        self.scalarIDs = scalarIDs
        byteIDs = (0..<256).map { b in
            Int32(vocab[String(format: "<0x%02X>", b)] ?? -1)
        }

        let mergeList = try json.array("merges")
        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(mergeList.count)
        let prefixLength = continuingSubwordPrefix?.count ?? 0
        for (rank, entry) in mergeList.enumerated() {
            let pair: [String]
            if let line = entry as? String {
                pair = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let parts = entry as? [String] {
                pair = parts
            } else {
                pair = []
            }
            guard pair.count == 2, let a = vocab[pair[0]], let b = vocab[pair[1]] else {
                throw QSTError.tokenizerField(json.file, json.sub("merges[\(rank)]"), "not a pair of vocabulary tokens")
            }
            // With a continuing-subword prefix, the right token loses its prefix when merged.
            let merged =
                pair[0]
                + (prefixLength > 0 && pair[1].hasPrefix(continuingSubwordPrefix!)
                    ? String(pair[1].dropFirst(prefixLength)) : pair[1])
            guard let id = vocab[merged] else {
                throw QSTError.tokenizerField(
                    json.file, json.sub("merges[\(rank)]"), "merged token '\(merged)' is not in the vocabulary")
            }
            merges[Self.key(Int32(a), Int32(b))] = Merge(rank: Int32(rank), id: Int32(id))
        }
        self.merges = merges
    }

    @inline(__always) private static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    /// Token ids of one pre-tokenized word.
    func encode(_ word: [Unicode.Scalar]) -> [Int32] {
        if ignoreMerges {
            var s = String()
            s.unicodeScalars.append(contentsOf: word)
            if let id = vocab[s] { return [Int32(id)] }
        }
        var symbols = initialSymbols(word)
        mergeAll(&symbols)
        return symbols
    }

    private func initialSymbols(_ word: [Unicode.Scalar]) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(word.count)
        var pendingUnknown = false
        let plainLookup = continuingSubwordPrefix == nil && endOfWordSuffix == nil
        for (i, s) in word.enumerated() {
            let id: Int32?
            if plainLookup {
                id = scalarIDs[s.value]
            } else {
                var piece = String(s)
                if i > 0, let p = continuingSubwordPrefix { piece = p + piece }
                if i == word.count - 1, let e = endOfWordSuffix { piece += e }
                id = vocab[piece].map { Int32($0) }
            }
            if let id {
                out.append(id)
                pendingUnknown = false
                continue
            }
            if byteFallback {
                let bytes = Array(String(s).utf8)
                if bytes.allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                    out.append(contentsOf: bytes.map { byteIDs[Int($0)] })
                    pendingUnknown = false
                    continue
                }
            }
            if let unkID {
                // fuse_unk collapses a run of unknown characters into one unknown token.
                if !(fuseUnknown && pendingUnknown) { out.append(Int32(unkID)) }
                pendingUnknown = true
            }
        }
        return out
    }

    private func mergeAll(_ ids: inout [Int32]) {
        let n = ids.count
        guard n > 1 else { return }
        var next = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i + 1) }
            count = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { buf, count in
            for i in 0..<n { buf[i] = Int32(i - 1) }
            count = n
        }
        var alive = [Bool](repeating: true, count: n)
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merges[Self.key(ids[i], ids[i + 1])] { heap.push(rank: m.rank, pos: Int32(i)) }
        }
        while let (rank, pos) = heap.pop() {
            let i = Int(pos)
            guard alive[i] else { continue }
            let j = Int(next[i])
            guard j < n, let m = merges[Self.key(ids[i], ids[j])], m.rank == rank else { continue }
            ids[i] = m.id
            alive[j] = false
            let k = Int(next[j])
            next[i] = Int32(k)
            if k < n { prev[k] = Int32(i) }
            let p = Int(prev[i])
            if p >= 0, let left = merges[Self.key(ids[p], ids[i])] { heap.push(rank: left.rank, pos: Int32(p)) }
            if k < n, let right = merges[Self.key(ids[i], ids[k])] { heap.push(rank: right.rank, pos: Int32(i)) }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        var i = 0
        while i < n {
            out.append(ids[i])
            i = Int(next[i])
        }
        ids = out
    }
}

/// A binary min-heap of candidate merges ordered by (rank, position).
private struct MergeHeap {
    private var items: [UInt64] = []

    mutating func push(rank: Int32, pos: Int32) {
        items.append(UInt64(UInt32(rank)) << 32 | UInt64(UInt32(pos)))
        var c = items.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard items[c] < items[p] else { break }
            items.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> (Int32, Int32)? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var p = 0
            let n = items.count
            while true {
                let l = 2 * p + 1
                guard l < n else { break }
                var c = l
                if l + 1 < n, items[l + 1] < items[l] { c = l + 1 }
                guard items[c] < items[p] else { break }
                items.swapAt(c, p)
                p = c
            }
        }
        return (Int32(top >> 32), Int32(truncatingIfNeeded: top & 0xFFFF_FFFF))
    }
}

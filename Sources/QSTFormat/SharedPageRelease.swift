import Foundation

/// The pages of one mapped safetensors file that two threads of `qst-quantize` read: the quantizer,
/// tensor by tensor in its own order, and the source hasher, front to back. Mapping a page (the fault,
/// and later dropping it again) costs about as much as hashing it, so each page is mapped once, by
/// whichever thread gets there first, and dropped (MADV_DONTNEED, which keeps resident memory near one
/// tensor) by whichever is past it second. A thread more than `maxSpread` bytes ahead of the other drops
/// its pages at once instead: the other maps them again, and resident memory stays bounded whatever the
/// two speeds (the hasher without SHA-NI is several times slower than the quantizer). The hash is the
/// longest job of the run, so the dropping is left to the quantizer: the hasher only reports its position
/// (and drops its own pages only when it runs far ahead).
final class SharedPageRelease: @unchecked Sendable {
    let file: MappedFile
    /// How far one thread may run ahead of the other before it drops its own pages.
    let maxSpread: Int

    private let lock = NSLock()
    /// Tensors in data-offset order: byte ranges, and whether the quantizer is done with each.
    private let starts: [Int], ends: [Int]
    private let indexByName: [String: Int]
    private var done: [Bool]
    /// The first tensor (file order) the quantizer is not done with.
    private var firstPending = 0
    /// The hasher has read every byte before this offset.
    private var hashed = 0
    /// Pages before this offset were dropped once both threads were past them.
    private var released = 0

    /// Drops [start, end) of the mapping; tests pass a recorder instead.
    private let dropRange: @Sendable (Int, Int) -> Void

    init(_ source: SafetensorsFile, maxSpread: Int = 64 << 20, dropRange: (@Sendable (Int, Int) -> Void)? = nil) {
        file = source.mapped
        self.maxSpread = maxSpread
        let mapped = source.mapped
        self.dropRange =
            dropRange ?? { start, end in mapped.advise(offset: start, length: end - start, willNeed: false) }
        let infos = source.orderedNames.compactMap { source.tensors[$0] }
        starts = infos.map(\.dataOffset)
        ends = infos.map { $0.dataOffset + $0.byteCount }
        indexByName = Dictionary(infos.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        done = Array(repeating: false, count: infos.count)
    }

    /// Below this offset the quantizer is done with every tensor.
    private var quantizedPrefix: Int { firstPending < starts.count ? starts[firstPending] : file.size }

    /// The quantizer will not read tensor `name` again.
    func quantizerFinished(_ name: String) {
        lock.withLock {
            guard let i = indexByName[name] else { return }
            done[i] = true
            while firstPending < done.count && done[firstPending] { firstPending += 1 }
            if starts[i] >= hashed + maxSpread { drop(starts[i], ends[i]) }  // the hasher is far behind
            releaseBehindBoth()
        }
    }

    /// The hasher has read bytes [chunkStart, offset) and everything before. What both threads are past
    /// is dropped by the quantizer's next `quantizerFinished`, or here once the quantizer has finished.
    func hasherReached(_ offset: Int, chunkStart: Int) {
        lock.withLock {
            hashed = offset
            if firstPending == done.count {
                releaseBehindBoth()
            } else if offset >= quantizedPrefix + maxSpread {
                drop(chunkStart, offset)
            }
        }
    }

    private func releaseBehindBoth() {
        let end = min(hashed, quantizedPrefix)
        if end > released {
            drop(released, end)
            released = end
        }
    }

    private func drop(_ start: Int, _ end: Int) { dropRange(start, end) }
}

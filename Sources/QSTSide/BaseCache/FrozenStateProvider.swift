/// Where a training forward of the side network gets what the frozen base contributes. Without a provider
/// `SideModel` runs the backbone and its downsamplers; a provider (BaseStateCache) may serve stored states
/// instead. Only meaningful for gradient-free (pooling) downsamplers, whose outputs depend on the data alone.
public protocol FrozenStateProvider: AnyObject {
    /// Calls `visit(v, down_v(h_v))` for v = 0…L in order, each `[batch·seqLen, width]` (padding rows may be
    /// anything finite), and returns norm(h_N) `[batch·seqLen, hidden]`, exact at the labelled positions
    /// (other rows may be anything finite: the loss never reads them).
    func frozenStates(
        _ batch: SideBatch, model: SideModel,
        visit: (Int, UnsafePointer<Float>) throws -> Void
    ) throws -> [Float]
}

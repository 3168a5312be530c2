import CMPIShim
import Foundation
import QSTFormat
import QSTSide

/// The processes of an `mpirun` job as a `GradientReducer`, over Open MPI loaded at run time.
///
/// Why run-time loading: one build of the tools works on machines with and without Open MPI. MPI is used
/// only when the process was started by `mpirun` (it sets `OMPI_COMM_WORLD_SIZE`); a plain start never
/// touches libmpi. MPI_Init_thread asks for MPI_THREAD_FUNNELED: only the main thread calls MPI, our
/// worker threads compute rank-local work only.
public final class MPIGroup: GradientReducer {
    public let rank: Int
    public let size: Int
    /// Bytes summed by collectives so far (payload sent into MPI_Allreduce by this rank).
    public private(set) var reducedBytes = 0
    /// Wall time spent inside collectives so far (includes waiting for slower ranks).
    public private(set) var reduceSeconds = 0.0
    /// With `profile` (QST_MPI_PROFILE=1), a barrier before each gradient all-reduce: the time spent in it
    /// is waiting for slower ranks, so `reduceSeconds − waitSeconds` is the transfer itself.
    public let profile: Bool
    public private(set) var waitSeconds = 0.0

    private init(rank: Int, size: Int, profile: Bool) { self.rank = rank; self.size = size; self.profile = profile }

    /// Whether the environment says this process belongs to an Open MPI job.
    public static func launchedByMPI(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        environment["OMPI_COMM_WORLD_SIZE"] != nil
    }

    /// The job this process belongs to, or nil when it was not started by `mpirun`.
    /// Throws when started by `mpirun` but the library cannot be loaded or initialised.
    public static func fromEnvironment(library: String? = nil) throws -> MPIGroup? {
        let env = ProcessInfo.processInfo.environment
        guard launchedByMPI(env) else { return nil }
        var message = [CChar](repeating: 0, count: 512)
        let lib = library ?? env["QST_MPI_LIBRARY"]
        let loaded = lib.map { qst_mpi_load($0, &message, message.count) } ?? qst_mpi_load(nil, &message, message.count)
        guard loaded == 0 else {
            throw QSTError(
                "started by mpirun (OMPI_COMM_WORLD_SIZE=\(env["OMPI_COMM_WORLD_SIZE"] ?? "")) but MPI is unusable: "
                    + String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        var rank: Int32 = 0, size: Int32 = 0
        let rc = qst_mpi_init(&rank, &size)
        guard rc == 0 else { throw QSTError("MPI_Init_thread failed with MPI error \(rc)") }
        return MPIGroup(rank: Int(rank), size: Int(size), profile: env["QST_MPI_PROFILE"] == "1")
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return }
        let start = DispatchTime.now().uptimeNanoseconds
        defer { reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
        if profile {
            try barrier()
            waitSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        }
        // MPI counts are Int32: large buffers go in slices.
        var offset = 0
        while offset < buffer.count {
            let n = min(buffer.count - offset, Int(Int32.max))
            let rc = qst_mpi_allreduce_sum_float(base + offset, Int32(n))
            guard rc == 0 else {
                throw QSTError("rank \(rank): MPI_Allreduce of \(n) floats failed with MPI error \(rc)")
            }
            offset += n
        }
        reducedBytes += 4 * buffer.count
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        var out = values
        let start = DispatchTime.now().uptimeNanoseconds
        defer { reduceSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9 }
        let rc = out.withUnsafeMutableBufferPointer { qst_mpi_allreduce_sum_double($0.baseAddress!, Int32($0.count)) }
        guard rc == 0 else {
            throw QSTError("rank \(rank): MPI_Allreduce of \(values.count) doubles failed with MPI error \(rc)")
        }
        reducedBytes += 8 * values.count
        return out
    }

    public func barrier() throws {
        let rc = qst_mpi_barrier()
        guard rc == 0 else { throw QSTError("rank \(rank): MPI_Barrier failed with MPI error \(rc)") }
    }

    /// What this rank prints if mpirun terminates it because another rank died.
    public func onJobTermination(_ message: String) { qst_mpi_on_termination(message) }

    /// Ends the whole job (every rank) after this rank printed its error.
    public func abort(code: Int32 = 1) -> Never {
        qst_mpi_abort(code)
        exit(code)
    }

    public func finalize() { _ = qst_mpi_finalize() }
}

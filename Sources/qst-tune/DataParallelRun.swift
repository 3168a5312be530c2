import Foundation
import QSTCLI
import QSTDistributed
import QSTEngine
import QSTNN
import QSTSide
#if canImport(Glibc)
    import Glibc
#endif

/// How `qst-tune` runs as one process or as one rank of an `mpirun` job.
struct DataParallelRun {
    let reducer: any GradientReducer
    let mpi: MPIGroup?
    /// Test hook (QST_DEBUG_KILL_AT_STEP=N, QST_DEBUG_KILL_RANK=R, default 0): rank R kills itself with
    /// SIGKILL right after optimizer step N, as a machine failure would, to test what the other ranks do.
    let killAtStep: Int?
    let killRank: Int

    var isLeader: Bool { reducer.isLeader }

    /// Runs `body` as this process's part of the job: MPI is set up when `mpirun` started the process; an
    /// error on any rank is printed (with its rank) and ends the whole job instead of leaving the others
    /// waiting in a collective.
    static func execute(tool: String, _ body: (DataParallelRun) throws -> Void) throws {
        let env = ProcessInfo.processInfo.environment
        let mpi = try MPIGroup.fromEnvironment()
        let run = DataParallelRun(
            reducer: mpi ?? SingleProcess(), mpi: mpi,
            killAtStep: env["QST_DEBUG_KILL_AT_STEP"].flatMap { Int($0) },
            killRank: env["QST_DEBUG_KILL_RANK"].flatMap { Int($0) } ?? 0)
        guard let mpi, mpi.size > 1 else {
            try body(run)
            mpi?.finalize()
            return
        }
        // Each rank's OpenBLAS (the side network's matmuls) gets the rank's own thread count, not every core.
        if let threads = env["QST_THREADS"].flatMap({ Int($0) }) { EngineThreads.configure(threads: threads) }
        do {
            try body(run)
        } catch {
            let message = (error as? LocalizedError)?.errorDescription ?? "\(error)"
            FileHandle.standardError.write(Data("\(tool): error: rank \(mpi.rank) of \(mpi.size): \(message)\n".utf8))
            mpi.abort()
        }
        mpi.finalize()
    }

    /// Tells this rank what to print if mpirun ends it because another rank failed.
    func announceTermination(run: String) {
        guard let mpi, mpi.size > 1 else { return }
        mpi.onJobTermination(
            "qst-tune: error: rank \(mpi.rank) of \(mpi.size) stopped: mpirun ended the job (another "
                + "rank failed or the job was interrupted); the last checkpoint in \(run) is intact "
                + "if one was written (resume with qst-tune --resume \(run), with any number of ranks)")
    }

    /// Called after every optimizer step on every rank.
    func afterStep(_ step: Int) {
        if let killAtStep, step == killAtStep, reducer.rank == killRank { kill(getpid(), SIGKILL) }
    }

    /// One line for the summary: ranks and the bytes of one step's gradient reduction.
    func describe(_ parameters: [Parameter]) -> DataParallelSummary {
        DataParallelSummary(
            ranks: reducer.size, gradientBytesPerStep: SingleProcess.gradientBytes(parameters),
            reducedBytes: mpi?.reducedBytes ?? 0, reduceSeconds: mpi?.reduceSeconds ?? 0,
            waitSeconds: mpi?.profile == true ? mpi?.waitSeconds : nil)
    }
}

struct DataParallelSummary: Codable {
    var ranks: Int
    /// F32 gradient bytes each rank contributes to the all-reduce per optimizer step (plus 16 bytes of loss).
    var gradientBytesPerStep: Int
    /// Totals on rank 0 over the run: bytes it sent into collectives and wall time inside them (waiting
    /// for slower ranks included), gradients, losses and evaluation sums together.
    var reducedBytes: Int
    var reduceSeconds: Double
    /// With QST_MPI_PROFILE=1: the part of reduceSeconds spent waiting for slower ranks (a barrier).
    var waitSeconds: Double?
}

import ArgumentParser
import Foundation
// The tools throw the toolchain's one error type (QSTCore/QSTError.swift); `QSTError.option` is the
// kind they raise themselves (a wrong combination of options and so on).
@_exported import struct QSTCore.QSTError
#if canImport(Glibc)
    import Glibc
#endif

/// Shared `main` for every qst tool: sets OpenBLAS up (BLASEnvironment), runs the command, and
/// turns any error into one line on stderr and a non-zero exit.
public enum ToolRunner {
    /// `usesBLAS: false` when this run never calls BLAS (see `BLASEnvironment.applyBeforeLoad`).
    public static func main<C: ParsableCommand>(_ command: C.Type, usesBLAS: Bool = true) {
        BLASEnvironment.applyBeforeLoad(blasUsed: usesBLAS)
        // Past a file-size limit (ulimit -f) a write should fail with EFBIG and be reported like any
        // other write error, not kill the tool with SIGXFSZ.
        signal(SIGXFSZ, SIG_IGN)
        do {
            var cmd = try command.parseAsRoot()
            try cmd.run()
        } catch let e as QSTError {
            fail(command, e.message)
        } catch let e as LocalizedError where e.errorDescription != nil {
            fail(command, e.errorDescription!)
        } catch let e as CocoaError {
            // Foundation's file errors (a folder that cannot be created, say): the path and the system's reason.
            fail(command, describe(e))
        } catch {
            if let message = choiceError(command, error) { fail(command, message) }
            // Help, version, other usage errors and ExitCode are the argument parser's to report.
            command.exit(withError: error)
        }
    }

    /// A value outside an enum option's choices (`--matmul fast`): the parser's one-sentence message, which
    /// names the option and lists the valid values, as the tool's one-line error with exit status 1 (what
    /// these options gave when they were checked by hand). nil for every other error.
    static func choiceError<C: ParsableCommand>(_ command: C.Type, _ error: Error) -> String? {
        guard command.exitCode(for: error) == .validationFailure else { return nil }
        let message = command.message(for: error)
        guard message.hasPrefix("The value '"), message.contains(". Please provide one of "), !message.contains("\n")
        else {
            return nil
        }
        return message
    }

    static func describe(_ e: CocoaError) -> String {
        let path = e.userInfo[NSFilePathErrorKey] as? String ?? (e.userInfo[NSURLErrorKey] as? URL)?.path
        var reason = e.localizedDescription
        if let u = e.userInfo[NSUnderlyingErrorKey] as? NSError, u.domain == NSPOSIXErrorDomain {
            reason = String(cString: strerror(Int32(u.code)))
        }
        return path.map { "\($0): \(reason)" } ?? reason
    }

    static func fail<C: ParsableCommand>(_ command: C.Type, _ message: String) -> Never {
        let line = message.replacingOccurrences(of: "\n", with: " ")
        FileHandle.standardError.write(Data("\(command.configuration.commandName ?? "qst"): error: \(line)\n".utf8))
        exit(1)
    }
}

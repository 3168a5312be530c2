import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Shared `main` for every qst tool: picks the fast BLAS kernel, runs the command, and
/// turns any error into one line on stderr and a non-zero exit.
public enum ToolRunner {
    public static func main<C: ParsableCommand>(_ command: C.Type) {
        BLASCoreSelection.ensureFastKernel()
        do {
            var cmd = try command.parseAsRoot()
            try cmd.run()
        } catch let e as ExitCode {
            exit(e.rawValue)
        } catch let e as CleanExit {
            command.exit(withError: e)
        } catch let e as CommandError {
            command.exit(withError: e)
        } catch {
            if "\(type(of: error))".contains("ParserError") || "\(type(of: error))".contains("ValidationError") {
                command.exit(withError: error)
            }
            FileHandle.standardError.write(Data("\(command.configuration.commandName ?? "qst"): error: \(error)\n".utf8))
            exit(1)
        }
    }
}

/// Errors the tools raise themselves (wrong combination of options and so on).
public struct CommandError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

import ArgumentParser

/// `--json`, shared by every tool that prints a result: the same flag and help everywhere, printed with
/// `JSONOutput.print`.
public struct OutputFormat: ParsableArguments {
    public init() {}
    @Flag(help: "Print the result as one JSON document on stdout instead of text.")
    public var json = false
}

import ArgumentParser

/// The base model every engine-running command starts from (qst-eval, qst-generate, qst-serve, qst-tune):
/// one positional argument with one help text.
public struct ModelArgument: ParsableArguments {
    public init() {}
    @Argument(help: "The base model: a .qst4 container or a Hugging Face safetensors folder (with its tokenizer).")
    public var model: String
}

import Foundation
import FuzzDriver
import FuzzSupport
import QSTSide

/// The training-data readers: the input as a JSONL / JSON-array file and as a GLUE TSV file of each task,
/// with and without --skip-bad, at a short and a long length limit (one combination per reader).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecords(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let tok = toyTokenizer else { return 0 }
    let path = FuzzInput.write(UnsafeRawBufferPointer(start: data, count: size), name: "data.txt")
    _ = try? RecordLoading.load(path: path, tokenizer: tok, maxLength: 4, skipBad: false)
    _ = try? RecordLoading.load(path: path, tokenizer: tok, maxLength: 512, skipBad: true)
    for (i, task) in GLUETask.names.enumerated() {
        _ = try? GLUETask.named(task).load(path: path, tokenizer: tok, maxLength: i % 2 == 0 ? 4 : 512, skipBad: i >= 2)
    }
    return 0
}

let toyTokenizer = try? ToyTokenizer()

@_cdecl("fuzz_records_main")
public func fuzzRecordsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzRecords)
}

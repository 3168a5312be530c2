import Foundation
import FuzzDriver
import FuzzSupport
import QSTSide

/// The training-data readers: the input as a JSONL / JSON-array file and as a GLUE TSV file of each task,
/// with and without --skip-bad, at a short and a long length limit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRecords(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let tok = try? ToyTokenizer() else { return 0 }
    let path = FuzzInput.write(UnsafeRawBufferPointer(start: data, count: size), name: "data.txt")
    for skipBad in [false, true] {
        for maxLength in [4, 512] {
            _ = try? RecordLoading.load(path: path, tokenizer: tok, maxLength: maxLength, skipBad: skipBad)
            for task in GLUETask.names {
                _ = try? GLUETask.named(task).load(path: path, tokenizer: tok, maxLength: maxLength, skipBad: skipBad)
            }
        }
    }
    return 0
}

@_cdecl("fuzz_records_main")
public func fuzzRecordsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzRecords)
}

import FuzzDriver
import FuzzSupport
import QSTFormat

/// The safetensors header parser, then every tensor read the way the tools read them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafetensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    _ = try? SafetensorsHeader(file: bytes, path: "input.safetensors")
    let path = FuzzInput.write(bytes, name: "model.safetensors")
    guard let file = try? SafetensorsFile(path: path) else { return 0 }
    for name in file.orderedNames {
        guard let info = try? file.info(name) else { continue }
        if info.dtype.isFloat { _ = try? file.floats(name) } else { _ = try? file.integers(name) }
        _ = try? file.withF32View(name) { $0.count }
    }
    _ = try? SafetensorsCheckpoint(path: path)
    return 0
}

@_cdecl("fuzz_safetensors_main")
public func fuzzSafetensorsMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzSafetensors)
}

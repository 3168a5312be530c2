import Foundation
import FuzzDriver
import FuzzSupport
import QSTFormat
import QSTSide

/// The side network's files: adapter_config.json / side_config.json (parts 1 and 2 of the input) and
/// the weights (part 3, a safetensors file), read the way qst-export and qst-generate read a folder.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSide(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let parts = FuzzInput.parts(UnsafeRawBufferPointer(start: data, count: size))
    let adapterJSON = parts[0]
    _ = try? SideConfig.decode(adapterJSON, context: "side_config.json").validate()
    _ = try? BaseShape.parse(configJSON: adapterJSON, context: "config.json")
    _ = try? CheckpointChoice(parsing: String(decoding: adapterJSON.prefix(32), as: UTF8.self))
    FuzzInput.remove(AdapterIO.configFileName)
    FuzzInput.remove(SideWeightsIO.configFileName)
    if parts.count > 1, !parts[0].isEmpty { FuzzInput.write(parts[0], name: AdapterIO.configFileName) }
    if parts.count > 1, !parts[1].isEmpty { FuzzInput.write(parts[1], name: SideWeightsIO.configFileName) }
    let weights = parts.count > 2 ? parts[2] : Data()
    FuzzInput.write(weights, name: AdapterIO.weightsFileName)
    FuzzInput.write(weights, name: SideWeightsIO.weightsFileName)
    _ = try? AdapterIO.load(directory: FuzzInput.directory)
    return 0
}

@_cdecl("fuzz_side_main")
public func fuzzSideMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    qst_fuzz_run(argc, argv, fuzzSide)
}

import NetModel
import FuzzSupport

/// Input: a network model's text (iproute2 commands). A model that parses is rendered.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let model = try? NetworkModel.parse(text, file: "fuzz.network") else { return 0 }
    _ = model.render()
    _ = model.renderRoutes()
    return 0
}

@_cdecl("FuzzNetModel_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}

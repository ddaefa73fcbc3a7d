import NetModel
import FuzzSupport

/// Input: a network model's text (iproute2 commands). A model that parses is rendered, and
/// `render()`'s contract is checked: its text parses back into the same model (the same
/// rendering and the same routes, in every table). Every route's network is then looked up, from every
/// interface, as `ip route get` would.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let model = try? NetworkModel.parse(text, file: "fuzz.network") else { return 0 }
    let rendered = model.render()
    let routes = model.renderRoutes()
    let again: NetworkModel
    do {
        again = try NetworkModel.parse(rendered, file: "rendered.network")
    } catch {
        fatalError("the rendering of a parsed model does not parse: \(error)\n--- input\n\(text)\n--- rendered\n\(rendered)")
    }
    precondition(again.render() == rendered, "render(parse(render(m))) != render(m)\n--- input\n\(text)\n--- rendered\n\(rendered)\n--- again\n\(again.render())")
    precondition(again.renderRoutes() == routes, "the routes differ after a round trip\n--- input\n\(text)\n--- rendered\n\(rendered)\n--- routes\n\(routes)\n--- again\n\(again.renderRoutes())")
    for r in model.routes.prefix(16) {
        for i in model.interfaces.indices.prefix(4) {
            _ = model.route(destination: r.network, source: r.preferredSource ?? 0, inputInterface: i, mark: r.network, tos: 0)
            _ = model.isLocal(r.network)
            _ = model.addressKind(r.network, interface: i)
        }
        _ = model.route(destination: r.network, inTable: r.table)
    }
    return 0
}

@_cdecl("FuzzNetModel_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}

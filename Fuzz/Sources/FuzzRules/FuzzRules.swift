import Rules
import FuzzSupport

/// Variables the VNS3 seeds (examples/vns3/edge.vns3) use.
let variables = [
    "plugin_instance_1_ip": "198.51.100.2", "plugin_instance_2_ip": "198.51.100.3",
    "vns3_public_ip": "203.0.113.1", "plugin_subnet": "198.51.100.0/28",
]

/// Input: rule-file text. Every dialect's parser reads it (each refuses the others' files at
/// their first line, so this costs little), the dialect detector and the ipset parser too.
/// A rule set that parses is rendered in iptables-save form; for the restore and command-line
/// dialects that rendering must parse again, to the same rendering (VNS3's COPY and LOOKUP
/// exist only in its dialect).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = RuleLoader.detect(text)
    _ = try? IPSetCollection.parse(text, file: "fuzz.ipsets")
    var parsed: [RuleSet] = []
    if let s = try? RestoreParser.parse(text, file: "fuzz.rules") { parsed.append(s) }
    if let r = try? CommandScriptParser.parse(text, file: "fuzz.sh") { parsed.append(r.ruleSet) }
    if let s = try? VNS3Parser.parse(text, file: "fuzz.vns3", variables: variables) {
        _ = RuleSetRenderer.render(s)
    }
    for set in parsed {
        let rendered = RuleSetRenderer.render(set)
        let again: RuleSet
        do {
            again = try RestoreParser.parse(rendered, file: "rendered.rules")
        } catch {
            fatalError("the rendering of a parsed rule set does not parse: \(error)\n--- input\n\(text)\n--- rendered\n\(rendered)")
        }
        let second = RuleSetRenderer.render(again)
        precondition(second == rendered, "render(parse(render(s))) != render(s)\n--- input\n\(text)\n--- rendered\n\(rendered)\n--- again\n\(second)")
    }
    return 0
}

@_cdecl("FuzzRules_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}

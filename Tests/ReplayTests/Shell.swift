import Foundation

/// Runs a command (through /usr/bin/env) for the namespace tests; throws with its output when it
/// fails, unless `allowFailure`.
@discardableResult
func shell(_ args: [String], allowFailure: Bool = false) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    if p.terminationStatus != 0 && !allowFailure {
        throw NSError(domain: "sh", code: Int(p.terminationStatus), userInfo: [NSLocalizedDescriptionKey: "\(args.joined(separator: " ")): \(text)"])
    }
    return text
}

/// The kernel tests' tools: nil when all are there, else what is missing.
func namespaceTestPrerequisites(_ tools: [String]) -> String? {
    if getuid() != 0 { return "not root" }
    for tool in tools where (try? shell(["which", tool])) == nil { return "\(tool) not installed" }
    return nil
}

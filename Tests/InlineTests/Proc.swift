import Foundation
import XCTest

// Process helpers for the inline end-to-end tests. Every blocking wait has a deadline: a command
// that overruns is killed by its PID (never by name) and reported, so a broken scenario fails
// instead of hanging. Output goes to files, not pipes, so a hung child never blocks a read.

struct InlineError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func sleepSeconds(_ s: Double) { usleep(useconds_t(max(0, s) * 1_000_000)) }

/// Polls `condition` every 20 ms until it holds or `timeout` seconds have passed.
@discardableResult
func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = monotonic() + timeout
    while true {
        if try condition() { return true }
        if monotonic() >= deadline { return false }
        usleep(20_000)
    }
}

struct CommandResult {
    var status: Int32
    var out: String
    var err: String
    var timedOut: Bool
    var text: String { out + err }
}

/// A child process with stdout and stderr in files of `dir`; stopped by its PID.
final class Background {
    let process = Process()
    let label: String
    let outPath: String
    let errPath: String
    private(set) var stopped = false

    init(_ args: [String], label: String, dir: String) throws {
        self.label = label
        let safe = label.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }
        outPath = dir + "/" + String(safe) + "-\(UUID().uuidString.prefix(8)).out"
        errPath = outPath.replacingOccurrences(of: ".out", with: ".err")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = args
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var stdout: String { (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "" }

    /// Waits for the process to exit on its own; false when the deadline passed first.
    @discardableResult
    func wait(timeout: Double) -> Bool {
        waitUntil(timeout: timeout) { !process.isRunning }
    }

    func signal(_ sig: Int32) {
        if process.isRunning { kill(process.processIdentifier, sig) }
    }

    /// SIGTERM, then SIGKILL after `grace` seconds; returns whether it exited from SIGTERM.
    @discardableResult
    func stop(grace: Double = 3) -> Bool {
        if stopped { return true }
        stopped = true
        guard process.isRunning else { return true }
        kill(process.processIdentifier, SIGTERM)
        if wait(timeout: grace) { return true }
        kill(process.processIdentifier, SIGKILL)
        wait(timeout: 5)
        return false
    }
}

/// Runs a command to completion within `timeout` seconds (killed by PID when it overruns).
@discardableResult
func run(_ args: [String], timeout: Double = 10, dir: String = NSTemporaryDirectory()) throws -> CommandResult {
    let b = try Background(args, label: args.prefix(4).joined(separator: "_"), dir: dir)
    defer {
        try? FileManager.default.removeItem(atPath: b.outPath)
        try? FileManager.default.removeItem(atPath: b.errPath)
    }
    let finished = b.wait(timeout: timeout)
    if !finished { b.stop(grace: 1) }
    return CommandResult(status: finished ? b.process.terminationStatus : -1, out: b.stdout, err: b.stderr, timedOut: !finished)
}

/// Like `run`, but throws unless the command exits 0.
@discardableResult
func must(_ args: [String], timeout: Double = 10) throws -> String {
    let r = try run(args, timeout: timeout)
    if r.timedOut { throw InlineError("timed out after \(timeout) s: \(args.joined(separator: " "))") }
    if r.status != 0 { throw InlineError("exit \(r.status): \(args.joined(separator: " ")): \(r.text)") }
    return r.out
}

/// Prints the loud skip banner; with CI=true it is a failure instead.
func inlineSkip(_ what: String, file: StaticString, line: UInt) {
    let msg = "SKIPPED: \(what)"
    print(String(repeating: "!", count: 80) + "\n!!!! " + msg + "\n" + String(repeating: "!", count: 80))
    if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(msg + " — required on CI", file: file, line: line) }
}

/// Root, namespaces and the tools the scenarios drive; nil when all are there.
func inlinePrerequisites() -> String? {
    if getuid() != 0 { return "not root" }
    for tool in ["ip", "iptables", "iptables-restore", "iptables-save", "sysctl", "tcpdump", "ethtool", "python3"] {
        if let r = try? run(["which", tool], timeout: 5), r.status == 0 { continue }
        return "\(tool) not installed (make deps)"
    }
    let probe = "sl-probe-\(getpid())"
    guard let r = try? run(["ip", "netns", "add", probe], timeout: 5), r.status == 0 else {
        return "cannot create network namespaces"
    }
    _ = try? run(["ip", "netns", "del", probe], timeout: 5)
    return nil
}

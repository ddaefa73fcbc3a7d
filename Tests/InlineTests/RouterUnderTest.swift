import Foundation
import XCTest

/// Who makes the router's decisions in a scenario.
enum InlineMode: String, CaseIterable {
    /// The scenario's rules loaded with iptables-restore into the router namespace; no Sluice.
    /// Proves the harness, the traffic and the expectations against the reference.
    case kernel
    /// No kernel rules of our own: `sluice run --rules FILE --queue Q --install-hooks` serves
    /// the router namespace.
    case sluice

    /// SLUICE_INLINE_MODES=kernel (or sluice, or kernel,sluice) limits the modes, for
    /// development; both run by default.
    static var enabled: Set<InlineMode> {
        guard let v = ProcessInfo.processInfo.environment["SLUICE_INLINE_MODES"], !v.isEmpty else { return Set(allCases) }
        return Set(v.split(separator: ",").compactMap { InlineMode(rawValue: $0.trimmingCharacters(in: .whitespaces)) })
    }
}

/// The repository root (this file is Tests/InlineTests/RouterUnderTest.swift).
func repoRoot(_ file: String = #filePath) -> String {
    URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// The rules of a scenario: what the kernel loads, and what Sluice runs (the same file unless
/// a target is spelled differently for Sluice, e.g. TEE vs COPY, MARK vs LOOKUP).
struct ScenarioRules {
    var kernel: String
    var sluice: String
    /// File extension for Sluice's copy (the dialect is detected from the first line).
    var sluiceExtension = "rules"
    var sluiceArgs: [String] = []

    init(_ both: String) { kernel = both; sluice = both }
    init(kernel: String, sluice: String, sluiceExtension: String = "rules", sluiceArgs: [String] = []) {
        self.kernel = kernel; self.sluice = sluice; self.sluiceExtension = sluiceExtension; self.sluiceArgs = sluiceArgs
    }
}

/// The router's rule engine in one mode: loads, reloads and finally stops (Sluice: SIGTERM by
/// PID, exit 0, `received == verdicts`, hooks gone).
final class RouterUnderTest {
    let mode: InlineMode
    let topo: Topology
    let queue: Int
    let sluiceBinary: String
    let control: String
    private(set) var rulesPath: String = ""
    private(set) var sluice: Background?
    private var generation = 0

    init(mode: InlineMode, topo: Topology, queue: Int = 7) {
        self.mode = mode
        self.topo = topo
        self.queue = queue
        sluiceBinary = ProcessInfo.processInfo.environment["SLUICE_BINARY"] ?? repoRoot() + "/.build/debug/sluice"
        control = topo.work + "/ctl.sock"
    }

    /// Kernel mode loads with `iptables-restore` (the nf_tables backend on Debian 12);
    /// SLUICE_INLINE_IPTABLES=legacy uses iptables-legacy-restore instead.
    static var kernelRestore: String {
        ProcessInfo.processInfo.environment["SLUICE_INLINE_IPTABLES"] == "legacy" ? "iptables-legacy-restore" : "iptables-restore"
    }

    private func writeRules(_ text: String, ext: String) throws -> String {
        generation += 1
        let path = topo.work + "/router-\(mode.rawValue)-\(generation).\(ext)"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Loads the rules (kernel) or starts Sluice and waits for `sluice run: serving`.
    func start(_ rules: ScenarioRules) throws {
        switch mode {
        case .kernel:
            rulesPath = try writeRules(rules.kernel, ext: "rules")
            try topo.exec(.router, [Self.kernelRestore, rulesPath])
        case .sluice where PassthroughStandIn.selected:
            rulesPath = topo.work + "/router.rules"
            try rules.kernel.write(toFile: rulesPath, atomically: true, encoding: .utf8)
            let script = topo.work + "/passthrough.py"
            try PassthroughStandIn.text.write(toFile: script, atomically: true, encoding: .utf8)
            try spawnAndWait([topo.python, script, "run", "--rules", rulesPath, "--queue", "\(queue)", "--install-hooks"])
        case .sluice:
            guard FileManager.default.isExecutableFile(atPath: sluiceBinary) else {
                throw InlineError("no sluice binary at \(sluiceBinary): swift build first")
            }
            // The rules file lives at a fixed path (SIGHUP rereads it).
            rulesPath = topo.work + "/router.\(rules.sluiceExtension)"
            try rules.sluice.write(toFile: rulesPath, atomically: true, encoding: .utf8)
            let check = try run([sluiceBinary, "check", rulesPath], timeout: 30)
            if check.status != 0 { throw InlineError("sluice check refuses the scenario's rules: \(check.text)") }
            try spawnAndWait([sluiceBinary, "run", "--rules", rulesPath, "--queue", "\(queue)", "--install-hooks", "--control", control] + rules.sluiceArgs)
        }
    }

    /// What `--install-hooks` may change in the router and must put back at exit.
    private var hostStateBefore: String?
    private func hostState() -> String {
        let acceptLocal = (try? topo.exec(.router, ["sysctl", "-n", "net.ipv4.conf.all.accept_local"])) ?? "?"
        let rules = (try? topo.exec(.router, ["ip", "rule", "show"])) ?? "?"
        return "accept_local=" + acceptLocal.trimmingCharacters(in: .whitespacesAndNewlines) + "\nip rules:\n" + rules
    }

    private func spawnAndWait(_ args: [String]) throws {
        hostStateBefore = hostState()
        let b = try topo.spawn(.router, args, label: "sluice-run")
        sluice = b
        let ready = waitUntil(timeout: 15) { b.stderr.contains("sluice run: serving") || !b.isRunning }
        if !ready || !b.isRunning {
            throw InlineError("sluice run did not become ready (\(b.isRunning ? "still running" : "exited \(b.process.terminationStatus)")): \(args.joined(separator: " "))\nstderr:\n\(b.stderr)")
        }
    }

    /// Kernel: iptables-restore of the new rules (its result returned). Sluice: rewrites the rule
    /// file in place and sends SIGHUP.
    @discardableResult
    func reload(kernel: String, sluice sluiceText: String) throws -> CommandResult? {
        switch mode {
        case .kernel:
            let path = try writeRules(kernel, ext: "rules")
            return try topo.execResult(.router, [Self.kernelRestore, path])
        case .sluice:
            guard let b = sluice, b.isRunning else { throw InlineError("sluice run is not running: \(sluice?.stderr ?? "")") }
            let tmp = rulesPath + ".new"
            try (PassthroughStandIn.selected ? kernel : sluiceText).write(toFile: tmp, atomically: false, encoding: .utf8)
            guard rename(tmp, rulesPath) == 0 else { throw InlineError("rename \(tmp)") }
            b.signal(SIGHUP)
            return nil
        }
    }

    /// `sluice ctl --control PATH WHAT` (sluice mode; nil in kernel mode or when it fails).
    func ctl(_ what: String) -> String? {
        guard mode == .sluice, !PassthroughStandIn.selected else { return nil }
        guard let r = try? topo.execResult(.router, [sluiceBinary, "ctl", "--control", control, what], timeout: 3) else { return nil }
        return r.status == 0 ? r.out : "ctl \(what) failed (\(r.status)): \(r.text)"
    }

    /// /proc/net/netfilter/nfnetlink_queue of the router namespace: one line per bound queue,
    /// `queue portid waiting copy_mode copy_range queue_dropped user_dropped id_sequence 1`.
    func nfqueueProc() -> String {
        (try? topo.execResult(.router, ["cat", "/proc/net/netfilter/nfnetlink_queue"]).out) ?? ""
    }

    struct QueueLine { var queue: Int; var waiting: Int; var queueDropped: Int; var userDropped: Int; var idSequence: Int; var raw: String }
    func queueLine() -> QueueLine? {
        for l in nfqueueProc().split(separator: "\n") {
            let w = l.split(whereSeparator: { $0 == " " }).compactMap { Int($0) }
            if w.count >= 8, w[0] == queue {
                return QueueLine(queue: w[0], waiting: w[2], queueDropped: w[5], userDropped: w[6], idSequence: w[7], raw: String(l))
            }
        }
        return nil
    }

    /// The ruleset the router namespace's iptables shows (both backends).
    func kernelRuleset() -> String {
        let nft = (try? topo.execResult(.router, ["iptables-save"]).out) ?? ""
        let legacy = (try? topo.execResult(.router, ["iptables-legacy-save"]).out) ?? ""
        // Hooks installed with nft directly would show only here.
        let native = (try? topo.execResult(.router, ["nft", "list", "ruleset"]).out) ?? ""
        return nft + legacy + native
    }

    struct StopReport { var status: Int32; var received: Int?; var verdicts: Int?; var finalLine: String?; var stderr: String }

    /// Sluice: SIGTERM by PID, waits (15 s) for the exit, and checks exit 0, the final
    /// `sluice run: stopped received=N verdicts=N` line with equal numbers, and that no NFQUEUE
    /// hook is left in the router. Kernel: nothing to stop.
    @discardableResult
    func finish(file: StaticString = #filePath, line: UInt = #line) -> StopReport? {
        guard mode == .sluice, let b = sluice else { return nil }
        sluice = nil
        if !b.isRunning {
            XCTFail("sluice run had exited before the end of the scenario (status \(b.process.terminationStatus)):\n\(b.stderr)", file: file, line: line)
            return StopReport(status: b.process.terminationStatus, stderr: b.stderr)
        }
        // The queue is bound while Sluice serves; its drop counters go into the test output.
        if let q = queueLine() {
            print("[inline] nfnetlink_queue before stop: queue \(q.queue) waiting=\(q.waiting) queue_dropped=\(q.queueDropped) user_dropped=\(q.userDropped) id_sequence=\(q.idSequence)")
        } else {
            XCTFail("queue \(queue) is not bound in the router namespace (/proc/net/netfilter/nfnetlink_queue):\n\(nfqueueProc())", file: file, line: line)
        }
        if let stats = ctl("stats") { print("[inline] sluice ctl stats:\n\(stats)") }
        kill(b.pid, SIGTERM)
        let exited = b.wait(timeout: 15)
        if !exited {
            b.stop(grace: 1)
            XCTFail("sluice run did not exit within 15 s of SIGTERM:\n\(b.stderr)", file: file, line: line)
        }
        let err = b.stderr
        let status = exited ? b.process.terminationStatus : -1
        var report = StopReport(status: status, stderr: err)
        if exited { XCTAssertEqual(b.process.terminationReason, .exit, "sluice run was killed by a signal", file: file, line: line) }
        XCTAssertEqual(status, 0, "sluice run exit status; stderr:\n\(err)", file: file, line: line)
        let lines = err.split(separator: "\n").map(String.init)
        if let last = lines.last(where: { $0.contains("sluice run: stopped") }) {
            report.finalLine = last
            report.received = Self.number(after: "received=", in: last)
            report.verdicts = Self.number(after: "verdicts=", in: last)
            XCTAssertNotNil(report.received, "no received=N in '\(last)'", file: file, line: line)
            XCTAssertEqual(report.received, report.verdicts, "every received packet gets a verdict: '\(last)'", file: file, line: line)
            XCTAssertEqual(lines.last, last, "the stopped line is the final line of stderr", file: file, line: line)
        } else {
            XCTFail("no final 'sluice run: stopped received=N verdicts=N' line; stderr:\n\(err)", file: file, line: line)
        }
        let left = kernelRuleset().split(separator: "\n").filter { $0.contains("NFQUEUE") || $0.contains("queue num") || $0.contains("queue to") || $0.contains("notrack") }
        XCTAssertTrue(left.isEmpty, "sluice run left its hooks installed:\n\(left.joined(separator: "\n"))", file: file, line: line)
        if let before = hostStateBefore {
            XCTAssertEqual(hostState(), before, "sluice run put back accept_local and the ip rules it changed", file: file, line: line)
        }
        print("[inline] \(report.finalLine ?? "(no final line)") exit=\(status)")
        return report
    }

    static func number(after key: String, in s: String) -> Int? {
        guard let r = s.range(of: key) else { return nil }
        return Int(s[r.upperBound...].prefix { $0.isNumber })
    }
}

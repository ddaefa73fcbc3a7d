#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Engine
import Rules
import Wire

/// The control socket of a running `sluice run` (a Unix stream socket; root only, mode 0600):
/// one command per connection, one answer, then close. `sluice ctl` is its client.
///
///     conntrack   the live connection table, in the `conntrack -L` format
///     counters    the running rule set in iptables-save format with [packets:bytes]
///     stats       per-queue and engine counters, one `name value` per line
public final class ControlServer: @unchecked Sendable {
    let path: String
    let fd: Int32
    let runner: Runner
    let rulesName: String

    public init(path: String, runner: Runner, rulesName: String) throws(QueueError) {
        self.path = path
        self.runner = runner
        self.rulesName = rulesName
        unlink(path)
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw QueueError("control socket") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { Glibc.close(s); throw QueueError(message: "control socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let old = umask(0o077)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        umask(old)
        guard r == 0, listen(s, 8) == 0 else { let e = errno; Glibc.close(s); throw QueueError("bind control socket \(path)", errno: e) }
        fd = s
    }

    public func start() {
        let t = Thread { [self] in self.loop() }
        t.name = "sluice-control"
        t.start()
    }

    public func close() {
        unlink(path)
        shutdown(fd, Int32(SHUT_RDWR))
    }

    func loop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            var buf = [UInt8](repeating: 0, count: 256)
            let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            let command = n > 0 ? String(decoding: buf[0 ..< n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            let answer = respond(command)
            var out = answer
            out.withUTF8 { b in
                var off = 0
                while off < b.count {
                    let w = write(c, b.baseAddress! + off, b.count - off)
                    if w <= 0 { break }
                    off += w
                }
            }
            Glibc.close(c)
        }
    }

    public func respond(_ command: String) -> String {
        switch command {
        case "conntrack":
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let now = Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
            return runner.withState { s in s.engine.conntrackListing(now: now) }
        case "counters":
            let set = runner.withState { s in s.engine.ruleSetWithCounters }
            return RuleSetRenderer.render(set, counters: true, header: "Live counters of sluice run (\(rulesName))")
        case "stats":
            return runner.statsText()
        default:
            return "error: unknown command '\(command)' (conntrack, counters or stats)\n"
        }
    }
}

extension Runner {
    /// Counters as `name value` lines (per queue, engine verdicts and reasons, the kernel's
    /// view of each queue).
    public func statsText() -> String {
        var lines: [String] = []
        lines.append("uptime_seconds \(String(format: "%.1f", Date().timeIntervalSince(started)))")
        for st in stats {
            let q = "queue\(st.queue)"
            let r = st.received.load(ordering: .relaxed), b = st.batches.load(ordering: .relaxed)
            lines.append("\(q)_received \(r)")
            lines.append("\(q)_verdicts \(st.verdicts.load(ordering: .relaxed))")
            lines.append("\(q)_accepted \(st.accepted.load(ordering: .relaxed))")
            lines.append("\(q)_dropped \(st.dropped.load(ordering: .relaxed))")
            lines.append("\(q)_rewritten \(st.rewritten.load(ordering: .relaxed))")
            lines.append("\(q)_batches \(b)")
            lines.append("\(q)_mean_batch \(b == 0 ? "0" : String(format: "%.2f", Double(r) / Double(b)))")
            lines.append("\(q)_batch_verdicts \(st.batchVerdicts.load(ordering: .relaxed))")
            lines.append("\(q)_injected \(st.injected.load(ordering: .relaxed))")
            lines.append("\(q)_enobufs \(st.enobufs.load(ordering: .relaxed))")
            lines.append("\(q)_netlink_errors \(st.netlinkErrors.load(ordering: .relaxed))")
            lines.append("\(q)_unknown_interface \(st.unknownInterface.load(ordering: .relaxed))")
            lines.append("\(q)_accepted_before_ready \(st.acceptedBeforeReady.load(ordering: .relaxed))")
        }
        withState { s in
            let e = s.engine
            lines.append("reloads \(s.generation)")
            for k in VerdictKind.allCases { lines.append("verdict_\(k.name) \(e.verdictCounts[Int(k.rawValue)])") }
            for r in EngineReason.allCases where r != .none { lines.append("reason_\(r.name) \(e.reasonCounts[Int(r.rawValue)])") }
            for reason in DropReason.allCases where e.malformed[reason] > 0 { lines.append("malformed_\(reason.name) \(e.malformed[reason])") }
            if let ct = e.conntrack {
                lines.append("conntrack_entries \(ct.count)")
                lines.append("conntrack_evicted \(ct.evicted)")
            }
        }
        for l in Runner.kernelQueueLines() {
            let w = l.split(separator: " ", omittingEmptySubsequences: true)
            guard w.count >= 8, let q = UInt16(w[0]), stats.contains(where: { $0.queue == q }) else { continue }
            lines.append("kernel_queue\(q)_waiting \(w[2])")
            lines.append("kernel_queue\(q)_queue_dropped \(w[5])")
            lines.append("kernel_queue\(q)_user_dropped \(w[6])")
            lines.append("kernel_queue\(q)_id_sequence \(w[7])")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The client side: sends one command to a control socket and returns the answer.
public func controlRequest(path: String, command: String) throws(QueueError) -> String {
    let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard s >= 0 else { throw QueueError("socket") }
    defer { close(s) }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw QueueError(message: "path too long") }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in bytes.enumerated() { p[i] = b } }
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    guard r == 0 else { throw QueueError("connect \(path) (is sluice run running with --control \(path)?)") }
    var c = command + "\n"
    _ = c.withUTF8 { write(s, $0.baseAddress, $0.count) }
    Glibc.shutdown(s, Int32(SHUT_WR))
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(s, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[0 ..< n]
    }
    return String(decoding: out, as: UTF8.self)
}

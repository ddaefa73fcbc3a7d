#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Engine
import Prometheus
import Rules
import Synchronization
import Wire

/// `--metrics HOST:PORT`: a Prometheus endpoint (GET /metrics, text format 0.0.4). Nothing is
/// counted per packet for it: at each scrape the registry (swift-prometheus) is brought up to
/// date from the workers' per-batch counters, the engine's counters (under the engine lock)
/// and the kernel's queue counters; counters that went down (rule counters after a reload)
/// start again as new series.
public final class MetricsServer: @unchecked Sendable {
    let fd: Int32
    let runner: Runner
    let registry = PrometheusCollectorRegistry()
    let lock = Mutex<[String: (Counter, UInt64)]>([:])
    let gauges = Mutex<[String: Gauge]>([:])
    public let port: UInt16

    public init(address listenAddress: String, runner: Runner) throws(QueueError) {
        self.runner = runner
        let parts = listenAddress.split(separator: ":")
        guard parts.count == 2, let p = UInt16(parts[1]), let a = IPv4Address(String(parts[0])) else {
            throw QueueError(message: "--metrics wants IPv4:PORT, not '\(listenAddress)'")
        }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw QueueError("metrics socket") }
        var one: Int32 = 1
        _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = p.bigEndian
        sa.sin_addr.s_addr = a.value.bigEndian
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0, listen(s, 16) == 0 else { let e = errno; Glibc.close(s); throw QueueError("bind metrics \(listenAddress)", errno: e) }
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        port = UInt16(bigEndian: bound.sin_port)
        fd = s
    }

    public func start() {
        let t = Thread { [self] in self.loop() }
        t.name = "sluice-metrics"
        t.start()
    }

    public func close() { shutdown(fd, Int32(SHUT_RDWR)) }

    func loop() {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue }; return }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = buf.withUnsafeMutableBytes { read(c, $0.baseAddress, $0.count) }
            let request = n > 0 ? String(decoding: buf[0 ..< n], as: UTF8.self) : ""
            let response: [UInt8]
            if request.hasPrefix("GET /metrics ") || request.hasPrefix("GET / ") {
                let body = scrape()
                response = Array("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body
            } else {
                response = Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)
            }
            response.withUnsafeBytes { b in
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

    /// Brings every series up to date and renders the registry.
    public func scrape() -> [UInt8] {
        for st in runner.stats {
            let q = [("queue", "\(st.queue)")]
            counter("sluice_queue_packets_total", q, st.received.load(ordering: .relaxed))
            counter("sluice_queue_batches_total", q, st.batches.load(ordering: .relaxed))
            counter("sluice_queue_rewritten_total", q, st.rewritten.load(ordering: .relaxed))
            counter("sluice_queue_injected_total", q, st.injected.load(ordering: .relaxed))
            counter("sluice_queue_enobufs_total", q, st.enobufs.load(ordering: .relaxed))
            counter("sluice_queue_netlink_errors_total", q, st.netlinkErrors.load(ordering: .relaxed))
            counter("sluice_log_lines_total", q, st.logLines.load(ordering: .relaxed))
            counter("sluice_log_suppressed_total", q, st.logSuppressed.load(ordering: .relaxed))
            let received = st.received.load(ordering: .relaxed), batches = st.batches.load(ordering: .relaxed)
            gauge("sluice_queue_mean_batch_size", q, batches == 0 ? 0 : Double(received) / Double(batches))
            let totals = st.hookTotals.withLock { $0 }
            for (k, hook) in ["prerouting", "output", "other"].enumerated() {
                for (v, verdict) in ["accept", "drop"].enumerated() {
                    let labels = q + [("hook", hook), ("verdict", verdict)]
                    counter("sluice_packets_total", labels, totals[k * 2 + v])
                    counter("sluice_bytes_total", labels, totals[6 + k * 2 + v])
                }
            }
        }
        let engine = runner.withState { s in
            (verdicts: s.engine.verdictCounts, reasons: s.engine.reasonCounts, malformed: s.engine.malformed,
             entries: s.engine.conntrack?.count, evicted: s.engine.conntrack?.evicted, rules: s.engine.ruleSetWithCounters,
             reloads: s.generation)
        }
        for k in VerdictKind.allCases { counter("sluice_engine_verdicts_total", [("verdict", k.name)], engine.verdicts[Int(k.rawValue)]) }
        for r in EngineReason.allCases where r != .none && r != .malformed {
            counter("sluice_drops_total", [("reason", r.name)], engine.reasons[Int(r.rawValue)])
        }
        for r in DropReason.allCases { counter("sluice_drops_total", [("reason", "malformed-" + r.name)], engine.malformed[r]) }
        gauge("sluice_reloads", [], Double(engine.reloads))
        if let entries = engine.entries, let evicted = engine.evicted {
            gauge("sluice_conntrack_entries", [], Double(entries))
            counter("sluice_conntrack_evictions_total", [], UInt64(evicted))
        }
        for t in engine.rules.tables {
            for c in t.chains {
                for (i, r) in c.rules.enumerated() where r.counters.packets > 0 {
                    let labels = [("table", t.name.rawValue), ("chain", c.name), ("rule", "\(i + 1)")]
                    counter("sluice_rule_packets_total", labels, r.counters.packets)
                    counter("sluice_rule_bytes_total", labels, r.counters.bytes)
                }
                if c.isBuiltin && c.counters.packets > 0 {
                    let labels = [("table", t.name.rawValue), ("chain", c.name), ("rule", "policy")]
                    counter("sluice_rule_packets_total", labels, c.counters.packets)
                    counter("sluice_rule_bytes_total", labels, c.counters.bytes)
                }
            }
        }
        for l in Runner.kernelQueueLines() {
            let w = l.split(separator: " ", omittingEmptySubsequences: true)
            guard w.count >= 8, let q = UInt16(w[0]), runner.stats.contains(where: { $0.queue == q }),
                  let waiting = Double(w[2]), let qd = UInt64(w[5]), let ud = UInt64(w[6]) else { continue }
            let labels = [("queue", "\(q)")]
            gauge("sluice_nfqueue_waiting", labels, waiting)
            counter("sluice_nfqueue_queue_dropped_total", labels, qd)
            counter("sluice_nfqueue_user_dropped_total", labels, ud)
        }
        return registry.emitToBuffer()
    }

    func key(_ name: String, _ labels: [(String, String)]) -> String {
        name + labels.map { "|\($0.0)=\($0.1)" }.joined()
    }

    /// Sets a counter to an absolute value: increments by the difference; a value that went
    /// down (counters reset by a reload) starts a new series.
    func counter(_ name: String, _ labels: [(String, String)], _ value: UInt64) {
        let k = key(name, labels)
        lock.withLock { m in
            if let (c, last) = m[k] {
                if value >= last {
                    if value > last { c.increment(by: Int64(value - last)) }
                    m[k] = (c, value)
                    return
                }
                registry.unregisterCounter(c)
            }
            let c = registry.makeCounter(name: name, labels: labels)
            if value > 0 { c.increment(by: Int64(value)) }
            m[k] = (c, value)
        }
    }

    func gauge(_ name: String, _ labels: [(String, String)], _ value: Double) {
        let k = key(name, labels)
        gauges.withLock { m in
            let g = m[k] ?? registry.makeGauge(name: name, labels: labels)
            m[k] = g
            g.set(value)
        }
    }
}

import Foundation

/// The hosts of an inline scenario, each a network namespace named `<prefix><host>` with a
/// prefix unique to the run (`sl-<pid>-<random>-`):
///
/// ```
///  client 198.51.100.2/24 ── eth0 198.51.100.1/24 ┐
///                                                 router (ip_forward=1)
///  sw: bridge br0 ── eth1 10.0.1.1/24 ────────────┤   server1 10.0.1.2, server2 10.0.1.3
///  plugin 10.0.2.2/24 ────── eth2 10.0.2.1/24 ────┘
/// ```
///
/// server1 and server2 hang off a bridge in a sixth namespace (`sw`), so the router has three
/// plain veth interfaces. Every host's default route points at the router. IPv6 is off
/// everywhere (no solicitations to queue or capture), transmit checksum offload is off on every
/// veth (captures show the real checksums, and a TEE/COPY clone can be compared byte for byte),
/// and in the router reverse-path filtering and redirects are off (the plugin scenarios send a
/// packet back in by another interface than the one its source routes to).
///
/// `close()` stops every process this topology started (by PID) and deletes every namespace;
/// callers `defer` it, so a failing scenario leaves nothing behind.
final class Topology {
    enum Host: String, CaseIterable { case client, router, sw, server1, server2, plugin }

    static let clientIP = "198.51.100.2"
    static let routerOutside = "198.51.100.1"
    static let routerInside = "10.0.1.1"
    static let routerPlugin = "10.0.2.1"
    static let server1IP = "10.0.1.2"
    static let server2IP = "10.0.1.3"
    static let pluginIP = "10.0.2.2"

    let prefix: String
    let work: String
    let python: String
    let script: String
    private var children: [Background] = []
    private var created: [String] = []
    private var closed = false
    let keep = ProcessInfo.processInfo.environment["SLUICE_INLINE_KEEP"] == "1"

    func ns(_ h: Host) -> String { prefix + h.rawValue }

    init(python: String) throws {
        prefix = "sl-\(getpid())-\(String(UInt32.random(in: 0 ... 0xFFFFFF), radix: 36))-"
        work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-inline-\(prefix)").path
        self.python = python
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        script = work + "/traffic.py"
        try TrafficScript.text.write(toFile: script, atomically: true, encoding: .utf8)
        do {
            try build()
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    func close() {
        if closed { return }
        closed = true
        for c in children.reversed() { c.stop(grace: 2) }
        children = []
        for n in created.reversed() { _ = try? run(["ip", "netns", "del", n], timeout: 10) }
        if !keep { try? FileManager.default.removeItem(atPath: work) } else { print("kept \(work)") }
    }

    private func build() throws {
        for h in Host.allCases {
            try must(["ip", "netns", "add", ns(h)])
            created.append(ns(h))
            try must(["ip", "netns", "exec", ns(h), "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                      "net.ipv6.conf.default.disable_ipv6=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                      "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0"])
            try must(["ip", "-n", ns(h), "link", "set", "lo", "up"])
        }
        try must(["ip", "netns", "exec", ns(.router), "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.icmp_ratemask=0"])
        try must(["ip", "-n", ns(.sw), "link", "add", "br0", "type", "bridge"])
        try must(["ip", "-n", ns(.sw), "link", "set", "br0", "up"])

        // (namespace, interface) pairs joined by a veth.
        let links: [(Host, String, Host, String)] = [
            (.router, "eth0", .client, "eth0"), (.router, "eth1", .sw, "r"), (.router, "eth2", .plugin, "eth0"),
            (.server1, "eth0", .sw, "s1"), (.server2, "eth0", .sw, "s2"),
        ]
        for (a, ia, b, ib) in links {
            try must(["ip", "link", "add", ia, "netns", ns(a), "type", "veth", "peer", "name", ib, "netns", ns(b)])
            for (h, i) in [(a, ia), (b, ib)] {
                try must(["ip", "netns", "exec", ns(h), "ethtool", "-K", i, "tx", "off"])
                if h == .sw { try must(["ip", "-n", ns(h), "link", "set", i, "master", "br0"]) }
                try must(["ip", "-n", ns(h), "link", "set", i, "up"])
            }
        }
        let addrs: [(Host, String, String)] = [
            (.client, "eth0", Self.clientIP + "/24"), (.router, "eth0", Self.routerOutside + "/24"),
            (.router, "eth1", Self.routerInside + "/24"), (.router, "eth2", Self.routerPlugin + "/24"),
            (.server1, "eth0", Self.server1IP + "/24"), (.server2, "eth0", Self.server2IP + "/24"),
            (.plugin, "eth0", Self.pluginIP + "/24"),
        ]
        for (h, i, a) in addrs { try must(["ip", "-n", ns(h), "addr", "add", a, "dev", i]) }
        for (h, gw) in [(Host.client, Self.routerOutside), (.server1, Self.routerInside), (.server2, Self.routerInside), (.plugin, Self.routerPlugin)] {
            try must(["ip", "-n", ns(h), "route", "add", "default", "via", gw])
        }
    }

    // MARK: running things in the hosts

    @discardableResult
    func exec(_ h: Host, _ args: [String], timeout: Double = 10) throws -> String {
        try must(["ip", "netns", "exec", ns(h)] + args, timeout: timeout)
    }

    func execResult(_ h: Host, _ args: [String], timeout: Double = 10) throws -> CommandResult {
        try run(["ip", "netns", "exec", ns(h)] + args, timeout: timeout, dir: work)
    }

    /// A long-running process in a host; stopped by PID in `close()` at the latest.
    func spawn(_ h: Host, _ args: [String], label: String) throws -> Background {
        let b = try Background(["ip", "netns", "exec", ns(h)] + args, label: "\(h.rawValue)-\(label)", dir: work)
        children.append(b)
        return b
    }

    func sysctl(_ h: Host, _ settings: String...) throws {
        try exec(h, ["sysctl", "-qw"] + settings)
    }

    private func waitReady(_ b: Background, _ ready: String, _ what: String) throws {
        // Generous: a server started under heavy steal time missed 5 s once.
        let ok = waitUntil(timeout: 15) { FileManager.default.fileExists(atPath: ready) || !b.isRunning }
        if !ok || !FileManager.default.fileExists(atPath: ready) {
            throw InlineError("\(what) did not start: \(b.stderr)")
        }
    }

    /// A TCP server answering each line with `name|peer:port|line`; returns its log path.
    @discardableResult
    func tcpServer(_ h: Host, port: Int, name: String) throws -> String {
        let log = work + "/\(name)-tcp\(port).log"
        let ready = log + ".ready"
        let b = try spawn(h, [python, "-u", script, "tcp-server", "--port", "\(port)", "--name", name, "--log", log, "--ready", ready],
                          label: "tcp-server-\(name)-\(port)")
        try waitReady(b, ready, "tcp server \(name):\(port)")
        return log
    }

    @discardableResult
    func udpServer(_ h: Host, port: Int, name: String, reply: Bool = true, quiet: Bool = false) throws -> String {
        let log = work + "/\(name)-udp\(port).log"
        let ready = log + ".ready"
        var args = [python, "-u", script, "udp-server", "--port", "\(port)", "--name", name, "--log", log, "--ready", ready]
        if !reply { args.append("--no-reply") }
        if quiet { args.append("--quiet") }
        let b = try spawn(h, args, label: "udp-server-\(name)-\(port)")
        try waitReady(b, ready, "udp server \(name):\(port)")
        return log
    }

    /// Connects, sends each message as a line and reads its reply, half-closes and waits for the
    /// server's close. Never throws for a network failure: the result says what happened.
    func tcpClient(_ h: Host, _ host: String, _ port: Int, messages: [String], timeout: Double = 3) throws -> TCPResult {
        let args = [python, "-u", script, "tcp-client", host, "\(port)", "--timeout", "\(timeout)"] + messages.flatMap { ["--message", $0] }
        let r = try execResult(h, args, timeout: timeout * Double(messages.count + 2) + 5)
        if r.timedOut { return TCPResult(json: #"{"error": "client process timed out"}"#) }
        return TCPResult(json: r.out.isEmpty ? r.err : r.out)
    }

    /// A client that pauses before each message after the first until `<stepDir>/go<i>` exists,
    /// and creates `<stepDir>/done<i>` after each reply.
    func steppedTCPClient(_ h: Host, _ host: String, _ port: Int, messages: [String], stepDir: String) throws -> Background {
        try FileManager.default.createDirectory(atPath: stepDir, withIntermediateDirectories: true)
        let args = [python, "-u", script, "tcp-client", host, "\(port)", "--timeout", "3", "--step-dir", stepDir, "--step-timeout", "20"]
            + messages.flatMap { ["--message", $0] }
        return try spawn(h, args, label: "tcp-client-stepped")
    }

    func udpClient(_ h: Host, _ host: String, _ port: Int, message: String = "hello", timeout: Double = 2) throws -> [String: Any] {
        let r = try execResult(h, [python, "-u", script, "udp-client", host, "\(port)", "--message", message, "--timeout", "\(timeout)"],
                               timeout: timeout + 5)
        var o = jsonObject(r.out)
        if o.isEmpty { o["result"] = "no result: \(r.text)" }
        return o
    }

    func ping(_ h: Host, _ host: String, timeout: Double = 1.5) throws -> [String: Any] {
        let r = try execResult(h, [python, "-u", script, "ping", host, "--timeout", "\(timeout)"], timeout: timeout + 5)
        var o = jsonObject(r.out)
        if o.isEmpty { o["result"] = "no result: \(r.text)" }
        return o
    }

    func udpFlood(_ h: Host, _ host: String, _ port: Int, seconds: Double) throws -> Background {
        let ready = work + "/flood-\(UUID().uuidString.prefix(6)).ready"
        let b = try spawn(h, [python, "-u", script, "udp-flood", host, "\(port)", "--seconds", "\(seconds)", "--ready", ready], label: "udp-flood")
        try waitReady(b, ready, "udp flood")
        return b
    }

    /// A packet capture in a host; `stop()` it (SIGTERM by PID) before reading the file.
    func capture(_ h: Host, interface: String, filter: [String], name: String) throws -> (Background, String) {
        let path = work + "/\(name).pcap"
        let b = try spawn(h, ["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode", "-s", "0", "-w", path] + filter, label: "tcpdump-\(name)")
        let ok = waitUntil(timeout: 5) { b.stderr.contains("listening on") || !b.isRunning }
        if !ok || !b.isRunning { throw InlineError("tcpdump in \(h.rawValue) did not start: \(b.stderr)") }
        return (b, path)
    }
}

/// The real interpreter behind python3 (pyenv's shim is a shell script: resolving it once keeps
/// the PID of a spawned script the interpreter's own).
func resolvePython() -> String? {
    guard let r = try? run(["python3", "-c", "import sys; print(sys.executable)"], timeout: 10), r.status == 0 else { return nil }
    let p = r.out.trimmingCharacters(in: .whitespacesAndNewlines)
    return p.isEmpty ? nil : p
}

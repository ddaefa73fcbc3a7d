import Capture
import Foundation
import Replay
import Rules
import Wire
import XCTest

// A reusable kernel-vs-Sluice differential harness.
//
// One `KernelHarness` owns one set of network namespaces (a router and one peer per router
// interface, all with a unique `skd<pid>x<random>` prefix) and can run many cases in it: each
// `run(_:)` loads the case's rules with iptables-restore (which replaces the whole filter table),
// zeroes the counters, injects the case's packets in order with tcpreplay from the peers, and
// collects what the kernel counted and forwarded; the same packets go through `Replayer.run`
// in-process. Reusing the namespaces keeps a case to a few hundred milliseconds.
//
// What is compared (see `Observation`):
// - per-rule counters and built-in policy counters of every filter chain except OUTPUT (the
//   kernel's own RSTs, ICMP errors and redirects traverse OUTPUT; Sluice generates none yet);
// - the IPv4 packets that left each router interface, byte for byte from the IP header on
//   (the kernel rewrites MACs; Sluice keeps the input's), sorted. Packets sourced from one of
//   the router's own addresses (the kernel's RSTs, port/host unreachables, time exceeded,
//   redirects) are left out on the kernel side, and so are the harness's sentinels.

/// One IPv4 packet and the router interface it arrives on.
struct InjectedPacket {
    var interface: String
    var ip: [UInt8]
    init(_ interface: String, _ ip: [UInt8]) { self.interface = interface; self.ip = ip }
}

/// A rule set and the packets to push through it.
struct KernelCase {
    var name: String
    /// iptables-restore text. `*filter` ... `COMMIT` is added around it when missing.
    var rules: String
    var packets: [InjectedPacket]
    init(_ name: String, rules: String, packets: [InjectedPacket]) {
        self.name = name
        self.packets = packets
        self.rules = rules.contains("*filter") ? rules : "*filter\n" + rules + (rules.hasSuffix("\n") ? "" : "\n") + "COMMIT\n"
    }
}

/// What one side (kernel or Sluice) did with a case.
struct Observation: Equatable, CustomStringConvertible {
    struct ChainCounters: Equatable {
        /// The policy's counters for built-in chains, nil for user chains.
        var policy: Counters?
        var rules: [Counters]
    }
    /// Filter chains except OUTPUT, by name.
    var chains: [String: ChainCounters] = [:]
    /// Forwarded IPv4 packets per egress interface (IP header on, sorted).
    var forwarded: [String: [[UInt8]]] = [:]

    /// Sum of IP total lengths per egress interface.
    var forwardedBytes: [String: Int] { forwarded.mapValues { $0.reduce(0) { $0 + $1.count } } }

    var description: String {
        var s = ""
        for name in chains.keys.sorted() {
            let c = chains[name]!
            s += "  \(name)"
            if let p = c.policy { s += " policy \(p.text)" }
            s += " rules " + c.rules.map(\.text).joined(separator: " ") + "\n"
        }
        for iface in forwarded.keys.sorted() where !forwarded[iface]!.isEmpty {
            s += "  out \(iface): \(forwarded[iface]!.count) packets, \(forwardedBytes[iface]!) bytes\n"
            for p in forwarded[iface]! { s += "    " + hex(p) + "\n" }
        }
        return s
    }

    /// Removes interfaces with no packets, so "no file" and "empty file" compare equal.
    func normalized() -> Observation {
        var o = self
        o.forwarded = forwarded.filter { !$0.value.isEmpty }
        return o
    }
}

func hex(_ b: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var s = ""
    for x in b { s.append(digits[Int(x >> 4)]); s.append(digits[Int(x & 15)]) }
    return s
}

struct CaseResult {
    var name: String
    var kernel: Observation
    var sluice: Observation
    /// Sluice's verdicts.jsonl, for messages.
    var sluiceVerdicts: String
    /// IPv4 packets the kernel sourced from its own addresses (RSTs, ICMP errors, redirects),
    /// per interface: left out of `kernel.forwarded`, reported for messages.
    var kernelOwnPackets: [String: Int] = [:]
    var agree: Bool { kernel.normalized() == sluice.normalized() }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Which iptables the kernel side is loaded with. On Debian 12 `iptables-restore` is the
/// nf_tables backend, which translates `-p tcp --dport` into native nft payload expressions;
/// the legacy backend runs the xtables `tcp`/`udp` matches (which hotdrop tinygrams).
enum IptablesBackend: String {
    case nft, legacy
    var restore: String { self == .nft ? "iptables-nft-restore" : "iptables-legacy-restore" }
    var save: String { self == .nft ? "iptables-nft-save" : "iptables-legacy-save" }
    var iptables: String { self == .nft ? "iptables-nft" : "iptables-legacy" }
}

final class KernelHarness {
    static let defaultNetwork = [
        "ip addr add 203.0.113.1/24 dev eth0",
        "ip addr add 192.168.1.1/24 dev eth1",
        "ip route add default via 203.0.113.254 dev eth0",
        "sysctl net.ipv4.ip_forward=1",
    ]
    /// Router interfaces and the MACs captured frames are addressed to.
    static let routerMAC: [String: [UInt8]] = ["eth0": [2, 0, 0, 0, 0, 1], "eth1": [2, 0, 0, 0, 1, 1]]
    /// Each peer's MAC; also the MAC of every static neighbour behind that interface.
    static let peerMAC: [String: [UInt8]] = ["eth0": [2, 0, 0, 0, 0, 0xfe], "eth1": [2, 0, 0, 0, 1, 0xfe]]
    static var interfaces: [String] { routerMAC.keys.sorted() }
    /// Sentinels are sent by the router straight out of each interface (a packet socket, so no
    /// netfilter) after a case: once a peer's capture holds the sentinel, it holds everything
    /// the case made the router send there. From a benchmarking range nothing else uses.
    static let sentinelSource = IPv4Address(198, 18, 0, 1)

    let backend: IptablesBackend
    let network: [String]
    let tag: String
    var router: String { tag + "r" }
    func peer(_ iface: String) -> String { tag + "p" + iface.suffix(1) }
    let work: String
    private(set) var routerAddresses: Set<UInt32> = []
    private var dumps: [String: Process] = [:]
    private var consumed: [String: Int] = [:]     // bytes of each peer capture already attributed
    private var neighbours: Set<String> = []
    private var closed = false
    /// Set when a run failed half way: the capture positions can no longer be trusted.
    private var broken: String?

    /// Builds the namespaces, or returns nil (after a loud SKIPPED line) when not root or a tool
    /// is missing; with CI=true that is a test failure instead.
    static func make(backend: IptablesBackend = .nft, network: [String] = defaultNetwork,
                     file: StaticString = #filePath, line: UInt = #line) throws -> KernelHarness? {
        if let missing = prerequisites(backend) {
            let msg = "SKIPPED: KernelDiffTests (\(backend.rawValue)) needs root, network namespaces, iptables, tcpreplay, tcpdump (\(missing))"
            print(String(repeating: "!", count: 80) + "\n" + msg + "\n" + String(repeating: "!", count: 80))
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(msg + " — required on CI", file: file, line: line) }
            return nil
        }
        let h = try KernelHarness(backend: backend, network: network)
        do {
            try h.setUp()
        } catch {
            h.close()
            throw error
        }
        return h
    }

    static func prerequisites(_ backend: IptablesBackend) -> String? {
        if getuid() != 0 { return "not root" }
        for tool in ["ip", backend.restore, backend.save, backend.iptables, "tcpreplay", "tcpdump", "sysctl"] {
            if (try? sh(["which", tool])) == nil { return "\(tool) not installed" }
        }
        return nil
    }

    private init(backend: IptablesBackend, network: [String]) throws {
        self.backend = backend
        self.network = network
        tag = "skd\(getpid() % 100000)x\(String(UInt32.random(in: 0 ... 0xFFFFF), radix: 36))"
        work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-kdiff-\(tag)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    deinit { close() }

    /// Stops the captures (by PID) and deletes the namespaces and the work directory. Safe to
    /// call twice; callers `defer` it.
    func close() {
        if closed { return }
        closed = true
        for (_, p) in dumps where p.isRunning {
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
        }
        dumps = [:]
        for ns in [router] + Self.interfaces.map(peer) {
            _ = try? Self.sh(["ip", "netns", "del", ns], allowFailure: true)
        }
        try? FileManager.default.removeItem(atPath: work)
    }

    // MARK: setup

    private func setUp() throws {
        let all = [router] + Self.interfaces.map(peer)
        for ns in all {
            try Self.sh(["ip", "netns", "add", ns])
            // IPv6 off before any link exists, so nothing solicits routers or joins groups.
            try Self.sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            try Self.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        }
        for iface in Self.interfaces {
            try Self.sh(["ip", "link", "add", iface, "netns", router, "address", Self.macText(Self.routerMAC[iface]!),
                         "type", "veth", "peer", "name", "p", "netns", peer(iface), "address", Self.macText(Self.peerMAC[iface]!)])
            try Self.sh(["ip", "-n", router, "link", "set", iface, "up"])
            try Self.sh(["ip", "-n", peer(iface), "link", "set", "p", "up"])
        }
        // The network model is iproute2 syntax: run its lines in the router namespace.
        for line in network {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            try Self.sh(["ip", "netns", "exec", router] + words)
        }
        let addrs = try Self.sh(["ip", "-n", router, "-4", "-o", "addr", "show"])
        for line in addrs.split(separator: "\n") {
            let w = line.split(separator: " ")
            if let i = w.firstIndex(of: "inet"), i + 1 < w.count,
               let a = IPv4Address(String(w[i + 1].split(separator: "/")[0])) { routerAddresses.insert(a.value) }
        }

        // Sentinel frames, one per interface, sent from the router namespace.
        for iface in Self.interfaces {
            let ip = PacketBuilder.udp(source: Self.sentinelSource, destination: IPv4Address(198, 18, 0, 2),
                                       sourcePort: 9, destinationPort: 9, payload: Array("sluice-sentinel".utf8))
            let frame = PacketBuilder.ethernet(destination: Self.peerMAC[iface]!, source: Self.routerMAC[iface]!, payload: ip)
            try Self.writePcap(work + "/sentinel-\(iface).pcap", frames: [frame])
        }
        // One capture per peer for the whole session, incoming IPv4 only, unbuffered.
        for iface in Self.interfaces {
            let path = work + "/kernel-\(iface).pcap"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["ip", "netns", "exec", peer(iface), "tcpdump", "-i", "p", "-Q", "in", "-U", "--immediate-mode",
                           "-n", "-s", "0", "-w", path, "ip"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            dumps[iface] = p
            consumed[iface] = 0
        }
        // tcpdump is listening once a sentinel shows up; resend until it does.
        let deadline = monotonicSeconds() + 5
        var pending = Set(Self.interfaces)
        while !pending.isEmpty {
            guard monotonicSeconds() < deadline else { throw HarnessError("tcpdump did not start on \(pending.sorted())") }
            for iface in pending {
                try sendSentinel(iface)
            }
            usleep(50_000)
            for iface in pending where try takeUntilSentinel(iface) != nil { pending.remove(iface) }
        }
    }

    private func sendSentinel(_ iface: String) throws {
        try Self.sh(["ip", "netns", "exec", router, "tcpreplay", "-q", "-t", "-i", iface, work + "/sentinel-\(iface).pcap"])
    }

    /// The peer's captured IPv4 packets from the last consumed position up to and including the
    /// first sentinel, or nil if no sentinel arrived yet. Sentinels are dropped from the result.
    private func takeUntilSentinel(_ iface: String) throws -> [[UInt8]]? {
        try takeUntilSentinel(iface, own: nil)
    }

    private func takeUntilSentinel(_ iface: String, own: UnsafeMutablePointer<Int>?) throws -> [[UInt8]]? {
        let path = work + "/kernel-\(iface).pcap"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let bytes = [UInt8](data)
        guard bytes.count >= 24 else { return nil }
        var off = max(consumed[iface]!, 24)
        var out: [[UInt8]] = []
        func le32(_ i: Int) -> Int { Int(bytes[i]) | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2]) << 16 | Int(bytes[i + 3]) << 24 }
        guard le32(0) == 0xA1B2C3D4 || le32(0) == 0xA1B23C4D, le32(20) == 1 else { throw HarnessError("\(path): not an Ethernet pcap") }
        while off + 16 <= bytes.count {
            let caplen = le32(off + 8)
            guard off + 16 + caplen <= bytes.count else { break }  // tcpdump is mid-write
            let frame = Array(bytes[off + 16 ..< off + 16 + caplen])
            off += 16 + caplen
            guard let ip = Self.ipv4(ofEthernet: frame) else { continue }
            let src = UInt32(ip[12]) << 24 | UInt32(ip[13]) << 16 | UInt32(ip[14]) << 8 | UInt32(ip[15])
            if src == Self.sentinelSource.value {
                consumed[iface] = off
                return out
            }
            if routerAddresses.contains(src) { own?.pointee += 1; continue }  // the kernel's own RSTs, ICMP errors, redirects
            out.append(ip)
        }
        return nil
    }

    /// The IPv4 packet in an Ethernet frame (padding cut by the IP total length).
    static func ipv4(ofEthernet f: [UInt8]) -> [UInt8]? {
        guard f.count >= 34, f[12] == 0x08, f[13] == 0x00, f[14] >> 4 == 4 else { return nil }
        let total = Int(f[16]) << 8 | Int(f[17])
        return Array(f[14 ..< min(f.count, 14 + total)])
    }

    // MARK: running a case

    func run(_ c: KernelCase) throws -> CaseResult {
        if let b = broken { throw HarnessError("harness unusable after an earlier failure: \(b)") }
        do {
            return try runUnchecked(c)
        } catch {
            broken = "\(c.name): \(error)"
            throw error
        }
    }

    private func runUnchecked(_ c: KernelCase) throws -> CaseResult {
        let dir = work + "/" + c.name.map { $0.isLetter || $0.isNumber ? $0 : "_" }.reduce("") { $0 + String($1) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let rulesPath = dir + "/rules"
        let networkPath = dir + "/network"
        try c.rules.write(toFile: rulesPath, atomically: true, encoding: .utf8)
        try (network.joined(separator: "\n") + "\n").write(toFile: networkPath, atomically: true, encoding: .utf8)

        // Frames per interface, stamped 1 ms apart in case order so Sluice's merge keeps it.
        var frames: [String: [(bytes: [UInt8], timestampNanos: Int64)]] = [:]
        for (i, p) in c.packets.enumerated() {
            guard let dst = Self.routerMAC[p.interface] else { throw HarnessError("\(c.name): unknown interface \(p.interface)") }
            let f = PacketBuilder.ethernet(destination: dst, source: Self.peerMAC[p.interface]!, payload: p.ip)
            frames[p.interface, default: []].append((f, 1_700_000_000_000_000_000 + Int64(i) * 1_000_000))
        }
        var inputs: [ReplayInput] = []
        for iface in frames.keys.sorted() {
            let path = dir + "/in-\(iface).pcap"
            try Data(PcapWriter.encode(frames: frames[iface]!, linkTypeRaw: LinkType.ethernet.rawValue)).write(to: URL(fileURLWithPath: path))
            inputs.append(ReplayInput(interface: iface, path: path))
        }

        // Sluice.
        _ = try Replayer.run(ReplayOptions(rulesPath: rulesPath, networkPath: networkPath, inputs: inputs, outDir: dir + "/sluice"))
        var sluice = Observation()
        let ours = try RestoreParser.load(path: dir + "/sluice/counters.rules")
        sluice.chains = Self.chainCounters(ours)
        for iface in Self.interfaces {
            let path = dir + "/sluice/\(iface).pcap"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let f = try CaptureFile.open(path: path)
            var pkts: [[UInt8]] = []
            for i in f.records.indices {
                // Left out like the kernel's own packets: what the box itself sends (REJECT replies,
                // ICMP time exceeded), sourced from its addresses.
                f.withFrame(i) { b in
                    if let ip = Self.ipv4(ofEthernet: Array(b)), !routerAddresses.contains(ip.withUnsafeBytes { $0.be32(12) }) { pkts.append(ip) }
                }
            }
            sluice.forwarded[iface] = pkts.sorted { $0.lexicographicallyPrecedes($1) }
        }
        let verdicts = (try? String(contentsOfFile: dir + "/sluice/verdicts.jsonl", encoding: .utf8)) ?? ""

        // The kernel: replace the filter table, zero counters, static neighbours for every next hop.
        try Self.sh(["ip", "netns", "exec", router, backend.restore, rulesPath])
        try Self.sh(["ip", "netns", "exec", router, backend.iptables, "-t", "filter", "-Z"])
        try addNeighbours(for: c.packets.map(\.ip))
        // Inject in order: one tcpreplay per run of consecutive packets on the same interface.
        var run: [[UInt8]] = []
        var runIface = ""
        var seq = 0
        func flush() throws {
            guard !run.isEmpty else { return }
            let path = dir + "/inject-\(seq).pcap"
            seq += 1
            try Self.writePcap(path, frames: run)
            try Self.sh(["ip", "netns", "exec", peer(runIface), "tcpreplay", "-q", "-t", "-i", "p", path])
            run = []
        }
        for p in c.packets {
            if p.interface != runIface { try flush(); runIface = p.interface }
            run.append(PacketBuilder.ethernet(destination: Self.routerMAC[p.interface]!, source: Self.peerMAC[p.interface]!, payload: p.ip))
        }
        try flush()
        usleep(20_000)  // let the softirqs that forward the last frames finish before the sentinels
        var kernel = Observation()
        var own: [String: Int] = [:]
        for iface in Self.interfaces {
            try sendSentinel(iface)
            let deadline = monotonicSeconds() + 3
            var n = 0
            defer { own[iface] = n }
            while true {
                if let pkts = try withUnsafeMutablePointer(to: &n, { try takeUntilSentinel(iface, own: $0) }) {
                    kernel.forwarded[iface] = pkts.sorted { $0.lexicographicallyPrecedes($1) }
                    break
                }
                guard monotonicSeconds() < deadline else { throw HarnessError("\(c.name): no sentinel on \(iface)") }
                usleep(5_000)
            }
        }
        let save = try Self.sh(["ip", "netns", "exec", router, backend.save, "-c", "-t", "filter"], stderr: false)
        kernel.chains = Self.chainCounters(try RestoreParser.parse(save, file: backend.save))
        return CaseResult(name: c.name, kernel: kernel, sluice: sluice, sluiceVerdicts: verdicts, kernelOwnPackets: own)
    }

    /// A permanent neighbour entry (the peer's MAC) for the next hop of every destination that
    /// the kernel would forward, so forwarding never waits on ARP.
    private func addNeighbours(for packets: [[UInt8]]) throws {
        for ip in packets where ip.count >= 20 {
            let dst = "\(ip[16]).\(ip[17]).\(ip[18]).\(ip[19])"
            guard !neighbours.contains("dst " + dst) else { continue }
            neighbours.insert("dst " + dst)
            guard let route = try? Self.sh(["ip", "-n", router, "-4", "-o", "route", "get", dst], stderr: false) else { continue }
            let w = route.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            if w.first == "local" || w.first == "broadcast" || w.first == "multicast" { continue }
            guard let d = w.firstIndex(of: "dev"), d + 1 < w.count, let mac = Self.peerMAC[w[d + 1]] else { continue }
            let hop = w.firstIndex(of: "via").map { w[$0 + 1] } ?? dst
            guard !neighbours.contains(hop + "@" + w[d + 1]) else { continue }
            neighbours.insert(hop + "@" + w[d + 1])
            try Self.sh(["ip", "-n", router, "neigh", "replace", hop, "lladdr", Self.macText(mac), "dev", w[d + 1], "nud", "permanent"])
        }
    }

    static func chainCounters(_ rs: RuleSet) -> [String: Observation.ChainCounters] {
        var out: [String: Observation.ChainCounters] = [:]
        guard let t = rs.table(.filter) else { return out }
        for c in t.chains where c.name != "OUTPUT" {
            out[c.name] = Observation.ChainCounters(policy: c.isBuiltin ? c.counters : nil, rules: c.rules.map(\.counters))
        }
        return out
    }

    // MARK: helpers

    static func macText(_ m: [UInt8]) -> String {
        m.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }

    static func writePcap(_ path: String, frames: [[UInt8]]) throws {
        let enc = PcapWriter.encode(frames: frames.enumerated().map { ($0.element, Int64($0.offset) * 1000) },
                                    linkTypeRaw: LinkType.ethernet.rawValue)
        try Data(enc).write(to: URL(fileURLWithPath: path))
    }

    /// Runs a command and waits for it; throws with its output when it fails.
    @discardableResult
    static func sh(_ args: [String], allowFailure: Bool = false, stderr: Bool = true) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = stderr ? out : FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if p.terminationStatus != 0 && !allowFailure {
            throw HarnessError("\(args.joined(separator: " ")) exited \(p.terminationStatus): \(text)")
        }
        return text
    }
}

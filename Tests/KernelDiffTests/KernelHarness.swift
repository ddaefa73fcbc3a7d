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
// `run(_:)` loads the case's rules with iptables-restore (all four tables: raw, mangle, filter, security,
// the undeclared ones empty), creates its IP sets, zeroes the counters, injects the case's packets in order with tcpreplay from the peers, and
// collects what the kernel counted and forwarded; the same packets go through `Replayer.run`
// in-process. Reusing the namespaces keeps a case to a few hundred milliseconds.
//
// What is compared (see `Observation`):
// - per-rule counters and built-in policy counters of every chain of every table the case's
//   rules declare (raw, mangle, filter, security), except the OUTPUT chains (the kernel's own
//   packets traverse them: RSTs for closed ports, port unreachables, redirects, which Sluice
//   does not model). The kernel is given an empty ACCEPT table for each of the four tables the
//   case does not declare, so nothing of an earlier case stays loaded; those are not compared.
// - the IPv4 packets that left each router interface, byte for byte from the IP header on
//   (the kernel rewrites MACs; Sluice keeps the input's), sorted, minus the box's own packets;
// - the box's own packets per interface (`KernelCase.compareOwnPackets`, opt-in): those sourced
//   from one of the router's addresses (ICMP errors, RSTs for local packets) and TCP resets no
//   input carried (REJECT --reject-with tcp-reset for a forwarded packet is sourced from the
//   original destination), with the IP ID and header checksum zeroed on both sides (the kernel
//   picks IDs). Without the opt-in they are left out on both sides, because the kernel also
//   sends things Sluice does not (RSTs for closed local ports, port unreachables for local UDP
//   with no socket, redirects for a packet that leaves by the interface it came in on).
//   The router namespace runs with `net.ipv4.icmp_ratemask=0`, so the kernel's per-destination
//   ICMP rate limit (burst 6, then 1/s, kept across cases) never eats an error.
// The harness's sentinels are left out everywhere.

/// One IPv4 packet and the router interface it arrives on.
struct InjectedPacket {
    var interface: String
    var ip: [UInt8]
    /// The frame's destination MAC; nil for the router interface's own MAC.
    var destinationMAC: [UInt8]?
    init(_ interface: String, _ ip: [UInt8], destinationMAC: [UInt8]? = nil) {
        self.interface = interface; self.ip = ip; self.destinationMAC = destinationMAC
    }
}

/// A rule set and the packets to push through it.
struct KernelCase {
    var name: String
    /// iptables-restore text. `*filter` ... `COMMIT` is added around it when it names no table.
    var rules: String
    var packets: [InjectedPacket]
    /// Compare the box's own packets too (see the header comment); only for cases where both
    /// sides should produce exactly the same ones.
    var compareOwnPackets: Bool
    /// `ipset restore` text: created in the router namespace before the rules are loaded; the
    /// kernel's `ipset save` of it is Sluice's `ipsetsPath`.
    var ipsets: String?
    init(_ name: String, rules: String, packets: [InjectedPacket], compareOwnPackets: Bool = false, ipsets: String? = nil) {
        self.name = name
        self.packets = packets
        self.compareOwnPackets = compareOwnPackets
        self.ipsets = ipsets
        let named = rules.split(separator: "\n").contains { $0.hasPrefix("*") }
        self.rules = named ? rules : "*filter\n" + rules + (rules.hasSuffix("\n") ? "" : "\n") + "COMMIT\n"
    }

    /// The tables the rules declare, in file order.
    var tables: [String] {
        rules.split(separator: "\n").filter { $0.hasPrefix("*") }.map { String($0.dropFirst()).trimmingCharacters(in: .whitespaces) }
    }
}

/// What one side (kernel or Sluice) did with a case.
struct Observation: Equatable, CustomStringConvertible {
    struct ChainCounters: Equatable {
        /// The policy's counters for built-in chains, nil for user chains.
        var policy: Counters?
        var rules: [Counters]
    }
    /// Chains except OUTPUT of the tables the case declares, by `table:CHAIN`.
    var chains: [String: ChainCounters] = [:]
    /// Forwarded IPv4 packets per egress interface (IP header on, sorted).
    var forwarded: [String: [[UInt8]]] = [:]
    /// The box's own packets per egress interface, IP ID and header checksum zeroed, sorted;
    /// only filled when the case compares them.
    var own: [String: [[UInt8]]] = [:]

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
        for iface in own.keys.sorted() where !own[iface]!.isEmpty {
            s += "  own \(iface): \(own[iface]!.count) packets\n"
            for p in own[iface]! { s += "    " + hex(p) + "\n" }
        }
        return s
    }

    /// Removes interfaces with no packets, so "no file" and "empty file" compare equal.
    func normalized() -> Observation {
        var o = self
        o.forwarded = forwarded.filter { !$0.value.isEmpty }
        o.own = own.filter { !$0.value.isEmpty }
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
    /// Set when Sluice refused the case (a rule or set file the kernel loaded); never agrees.
    var sluiceError: String?
    var agree: Bool { sluiceError == nil && kernel.normalized() == sluice.normalized() }
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
        // Policy routing: packets marked 0x64 leave by eth1 (cases that set other marks avoid it).
        "ip route add default via 192.168.1.254 dev eth1 table 100",
        "ip rule add fwmark 0x64 lookup 100",
        "sysctl net.ipv4.ip_forward=1",
    ]
    /// The four tables the harness manages (nat is refused by Sluice), with their built-in chains.
    static let tables: [(name: String, chains: [String])] = [
        ("raw", ["PREROUTING", "OUTPUT"]), ("mangle", ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]),
        ("filter", ["INPUT", "FORWARD", "OUTPUT"]), ("security", ["INPUT", "FORWARD", "OUTPUT"]),
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
    /// Whether an earlier case left IP sets in the router namespace.
    private var setsLoaded = false
    private var closed = false
    /// Set when a run failed half way: the capture positions can no longer be trusted.
    private var broken: String?

    /// Builds the namespaces, or returns nil (after a loud SKIPPED line) when not root or a tool
    /// is missing; with CI=true that is a test failure instead.
    static func make(backend: IptablesBackend = .nft, network: [String] = defaultNetwork,
                     file: StaticString = #filePath, line: UInt = #line) throws -> KernelHarness? {
        if let missing = prerequisites(backend) {
            let msg = "SKIPPED: KernelDiffTests (\(backend.rawValue)) needs root, network namespaces, iptables, tcpreplay, tcpdump, ethtool, ipset (\(missing))"
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
        for tool in ["ip", backend.restore, backend.save, backend.iptables, "tcpreplay", "tcpdump", "sysctl", "ethtool", "ipset"] {
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
            // The box's own TCP resets leave with CHECKSUM_PARTIAL, and a veth hands them to the
            // peer unfinished (pseudo-header sum only): checksum in software instead.
            try Self.sh(["ip", "netns", "exec", router, "ethtool", "-K", iface, "tx", "off"])
            try Self.sh(["ip", "-n", router, "link", "set", iface, "up"])
            try Self.sh(["ip", "-n", peer(iface), "link", "set", "p", "up"])
        }
        // No ICMP rate limiting (icmpv4_mask_allow): errors are compared one for one.
        try Self.sh(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.icmp_ratemask=0"])
        // The network model is iproute2 syntax: run its lines in the router namespace.
        for line in network {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            try Self.sh(["ip", "netns", "exec", router] + words)
        }
        // Every gateway of the model is the peer behind its interface (permanent, no ARP).
        for line in network {
            let w = line.split(separator: " ").map(String.init)
            guard let v = w.firstIndex(of: "via"), v + 1 < w.count, let d = w.firstIndex(of: "dev"), d + 1 < w.count,
                  let mac = Self.peerMAC[w[d + 1]] else { continue }
            try Self.sh(["ip", "-n", router, "neigh", "replace", w[v + 1], "lladdr", Self.macText(mac), "dev", w[d + 1], "nud", "permanent"])
            neighbours.insert(w[v + 1] + "@" + w[d + 1])
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
        try takeUntilSentinel(iface, injectedRST: false)?.forwarded
    }

    /// As above, split into forwarded packets and the box's own (see `isOwn`).
    private func takeUntilSentinel(_ iface: String, injectedRST: Bool) throws -> (forwarded: [[UInt8]], own: [[UInt8]])? {
        let path = work + "/kernel-\(iface).pcap"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let bytes = [UInt8](data)
        guard bytes.count >= 24 else { return nil }
        var off = max(consumed[iface]!, 24)
        var out: [[UInt8]] = []
        var own: [[UInt8]] = []
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
                return (out, own)
            }
            if isOwn(ip, injectedRST: injectedRST) { own.append(Self.maskedOwn(ip)) } else { out.append(ip) }
        }
        return nil
    }

    /// The box's own packets: sourced from one of its addresses (ICMP errors, RSTs and
    /// redirects), or a TCP reset when the case injected none (REJECT --reject-with tcp-reset
    /// answers a forwarded packet from the original destination's address).
    func isOwn(_ ip: [UInt8], injectedRST: Bool) -> Bool {
        guard ip.count >= 20 else { return false }
        let src = UInt32(ip[12]) << 24 | UInt32(ip[13]) << 16 | UInt32(ip[14]) << 8 | UInt32(ip[15])
        if routerAddresses.contains(src) { return true }
        let hl = Int(ip[0] & 0x0F) * 4
        let isRST = ip[9] == 6 && ip.count >= hl + 14 && ip[6] & 0x1F == 0 && ip[7] == 0 && ip[hl + 13] & 0x04 != 0
        return isRST && !injectedRST
    }

    /// IP ID (bytes 4-5) and header checksum (bytes 10-11) zeroed: the kernel picks IDs.
    static func maskedOwn(_ ip: [UInt8]) -> [UInt8] {
        var m = ip
        m[4] = 0; m[5] = 0; m[10] = 0; m[11] = 0
        return m
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
            guard Self.routerMAC[p.interface] != nil else { throw HarnessError("\(c.name): unknown interface \(p.interface)") }
            let f = Self.frame(p)
            frames[p.interface, default: []].append((f, 1_700_000_000_000_000_000 + Int64(i) * 1_000_000))
        }
        var inputs: [ReplayInput] = []
        for iface in frames.keys.sorted() {
            let path = dir + "/in-\(iface).pcap"
            try Data(PcapWriter.encode(frames: frames[iface]!, linkTypeRaw: LinkType.ethernet.rawValue)).write(to: URL(fileURLWithPath: path))
            inputs.append(ReplayInput(interface: iface, path: path))
        }

        let injectedRST = c.packets.contains { isOwn($0.ip, injectedRST: false) && !routerAddresses.contains($0.ip.withUnsafeBytes { $0.be32(12) }) }
        let tables = Set(c.tables)

        // IP sets: the kernel's, and its `ipset save` for Sluice. Sets still referenced by the
        // previous case's rules cannot be destroyed: empty every table first.
        var ipsetsPath: String?
        if setsLoaded || c.ipsets != nil {
            try loadKernelTables("", dir: dir)
            try Self.sh(["ip", "netns", "exec", router, "ipset", "destroy"])
            setsLoaded = false
        }
        if let sets = c.ipsets {
            try sets.write(toFile: dir + "/ipset-restore", atomically: true, encoding: .utf8)
            try Self.sh(["ip", "netns", "exec", router, "ipset", "-f", dir + "/ipset-restore", "restore"])
            setsLoaded = true
            let saved = try Self.sh(["ip", "netns", "exec", router, "ipset", "save"], stderr: false)
            ipsetsPath = dir + "/ipsets"
            try saved.write(toFile: ipsetsPath!, atomically: true, encoding: .utf8)
        }

        // Sluice. Refusing what the kernel loads is a difference, not a harness failure.
        var sluice = Observation()
        var sluiceError: String?
        do {
            _ = try Replayer.run(ReplayOptions(rulesPath: rulesPath, networkPath: networkPath, inputs: inputs, outDir: dir + "/sluice",
                                               ipsetsPath: ipsetsPath))
            sluice.chains = Self.chainCounters(saveText: try String(contentsOfFile: dir + "/sluice/counters.rules", encoding: .utf8), tables: tables)
        } catch {
            sluiceError = "\(error)"
        }
        for iface in Self.interfaces where sluiceError == nil {
            let path = dir + "/sluice/\(iface).pcap"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let f = try CaptureFile.open(path: path)
            var pkts: [[UInt8]] = []
            var own: [[UInt8]] = []
            for i in f.records.indices {
                // What the box itself sends (REJECT replies, ICMP time exceeded), told apart like
                // the kernel's.
                f.withFrame(i) { b in
                    guard let ip = Self.ipv4(ofEthernet: Array(b)) else { return }
                    if isOwn(ip, injectedRST: injectedRST) { own.append(Self.maskedOwn(ip)) } else { pkts.append(ip) }
                }
            }
            sluice.forwarded[iface] = pkts.sorted { $0.lexicographicallyPrecedes($1) }
            if c.compareOwnPackets { sluice.own[iface] = own.sorted { $0.lexicographicallyPrecedes($1) } }
        }
        let verdicts = (try? String(contentsOfFile: dir + "/sluice/verdicts.jsonl", encoding: .utf8)) ?? ""

        // The kernel: replace all four tables, zero counters, static neighbours for every next hop
        // (and for the senders, which the box's own packets go back to).
        try loadKernelTables(c.rules, dir: dir)
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
            run.append(Self.frame(p))
        }
        try flush()
        usleep(20_000)  // let the softirqs that forward the last frames finish before the sentinels
        var kernel = Observation()
        var own: [String: Int] = [:]
        for iface in Self.interfaces {
            try sendSentinel(iface)
            let deadline = monotonicSeconds() + 3
            while true {
                if let pkts = try takeUntilSentinel(iface, injectedRST: injectedRST) {
                    kernel.forwarded[iface] = pkts.forwarded.sorted { $0.lexicographicallyPrecedes($1) }
                    if c.compareOwnPackets { kernel.own[iface] = pkts.own.sorted { $0.lexicographicallyPrecedes($1) } }
                    own[iface] = pkts.own.count
                    break
                }
                guard monotonicSeconds() < deadline else { throw HarnessError("\(c.name): no sentinel on \(iface)") }
                usleep(5_000)
            }
        }
        let save = try Self.sh(["ip", "netns", "exec", router, backend.save, "-c"], stderr: false)
        kernel.chains = Self.chainCounters(saveText: save, tables: tables)
        return CaseResult(name: c.name, kernel: kernel, sluice: sluice, sluiceVerdicts: verdicts, kernelOwnPackets: own, sluiceError: sluiceError)
    }

    /// Loads `rules` into the router with an empty ACCEPT table for each of the four tables it
    /// does not declare, then zeroes every counter.
    private func loadKernelTables(_ rules: String, dir: String) throws {
        let declared = Set(rules.split(separator: "\n").filter { $0.hasPrefix("*") }.map { String($0.dropFirst()).trimmingCharacters(in: .whitespaces) })
        var text = rules
        if !text.isEmpty && !text.hasSuffix("\n") { text += "\n" }
        for t in Self.tables where !declared.contains(t.name) {
            text += "*\(t.name)\n" + t.chains.map { ":\($0) ACCEPT [0:0]\n" }.joined() + "COMMIT\n"
        }
        let path = dir + "/kernel-rules"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        try Self.sh(["ip", "netns", "exec", router, backend.restore, path])
        let zero = Self.tables.map { "\(backend.iptables) -t \($0.name) -Z" }.joined(separator: " && ")
        try Self.sh(["ip", "netns", "exec", router, "sh", "-c", zero])
    }

    /// An injected packet's Ethernet frame: from the peer, to the router's MAC unless the packet
    /// names another destination MAC.
    static func frame(_ p: InjectedPacket) -> [UInt8] {
        PacketBuilder.ethernet(destination: p.destinationMAC ?? routerMAC[p.interface]!, source: peerMAC[p.interface]!, payload: p.ip)
    }

    /// A permanent neighbour entry (the peer's MAC) for the next hop of every destination that
    /// the kernel would forward, so forwarding never waits on ARP.
    private func addNeighbours(for packets: [[UInt8]]) throws {
        let hosts = packets.filter { $0.count >= 20 }.flatMap { [Array($0[16 ..< 20]), Array($0[12 ..< 16])] }
        for ip in hosts {
            let dst = "\(ip[0]).\(ip[1]).\(ip[2]).\(ip[3])"
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

    /// Chain and rule counters of `iptables-save -c` text (the kernel's, or Sluice's
    /// counters.rules) for `tables`, by `table:CHAIN`, OUTPUT chains left out. Read from the
    /// text's counter columns only, so a match the kernel spells differently cannot break it.
    static func chainCounters(saveText: String, tables: Set<String>) -> [String: Observation.ChainCounters] {
        var out: [String: Observation.ChainCounters] = [:]
        var table = ""
        func counters(_ w: Substring) -> Counters? {
            guard w.hasPrefix("["), w.hasSuffix("]") else { return nil }
            let pb = w.dropFirst().dropLast().split(separator: ":")
            guard pb.count == 2, let p = UInt64(pb[0]), let b = UInt64(pb[1]) else { return nil }
            return Counters(packets: p, bytes: b)
        }
        for raw in saveText.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if raw.hasPrefix("*") { table = raw.dropFirst().trimmingCharacters(in: .whitespaces); continue }
            guard tables.contains(table) else { continue }
            let w = raw.split(separator: " ")
            if raw.hasPrefix(":"), w.count >= 3, let c = counters(w[2]) {
                let name = String(w[0].dropFirst())
                if name != "OUTPUT" { out[table + ":" + name] = Observation.ChainCounters(policy: w[1] == "-" ? nil : c, rules: []) }
            } else if raw.hasPrefix("["), w.count >= 3, w[1] == "-A", let c = counters(w[0]) {
                let key = table + ":" + w[2]
                if w[2] != "OUTPUT" { out[key, default: Observation.ChainCounters(policy: nil, rules: [])].rules.append(c) }
            }
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

import Capture
import Replay
import Wire
import XCTest

/// The NAT scenarios of NATGoldenTests, put through the kernel: a router namespace with one veth
/// per scenario interface (eth0, eth1, and eth2 for the two-uplink CONNMARK case), configured
/// by the scenario's iproute2 lines and rule file, fresh for every scenario (conntrack state),
/// with a unique `snk<pid>x<random>` prefix, deleted even on failure.
///
/// Frames are injected one at a time in Sluice's merge order; after each, the test waits until
/// the kernel has sent as many packets out of each interface as Sluice did for that frame, and
/// compares them packet by packet, byte for byte from the IP header on. The one freedom the
/// kernel has: the source port a SNAT/MASQUERADE picks after a clash (the kernel starts from a
/// random offset, Sluice from the original port + 1). Where a scenario allows it
/// (`NATScenario.portChoice`), packets that differ only in that port (and the L4 checksum) pass
/// when both ports are in range and not already taken towards the same remote endpoint; the
/// pair is remembered, later packets of the connection are compared through it, and replies
/// are injected into the kernel addressed to the kernel's port.
///
/// Also compared: per-rule and policy counters of every table, OUTPUT chains excepted (the
/// kernel's own packets traverse them). Left out: the box's own packets (ICMP errors and
/// resets it sends from its addresses), which Sluice does not produce here; ICMP redirects
/// are turned off in the router.
final class NATKernelDifferentialTests: XCTestCase {
    func testMasqueradeAgreesWithKernel() throws { try compare(.masquerade) }
    func testSNATPortClashAgreesWithKernel() throws { try compare(.snatClash) }
    func testNETMAPAgreesWithKernel() throws { try compare(.netmap) }
    func testHairpinAgreesWithKernel() throws { try compare(.hairpin) }
    func testICMPErrorTranslationAgreesWithKernel() throws { try compare(.icmpErrors) }
    func testCONNMARKBalancingAgreesWithKernel() throws { try compare(.connmark) }
    func testStatefulFilterAgreesWithKernel() throws { try compare(.stateful) }

    static let peerMAC: [String: [UInt8]] = ["eth0": [2, 0, 0, 0, 0, 0xfe], "eth1": [2, 0, 0, 0, 1, 0xfe], "eth2": [2, 0, 0, 0, 2, 0xfe]]

    @discardableResult
    static func sh(_ args: [String], allowFailure: Bool = false) throws -> String { try shell(args, allowFailure: allowFailure) }

    func prerequisites() -> String? {
        namespaceTestPrerequisites(["ip", "iptables-restore", "iptables-save", "tcpreplay", "tcpdump", "sysctl", "ethtool"])
    }

    /// Reads a growing tcpdump file: the complete records after the last one read.
    final class PcapTail {
        let path: String
        var offset = 24
        init(_ path: String) { self.path = path }
        func next() -> [[UInt8]] {
            guard let data = FileManager.default.contents(atPath: path), data.count >= 24 else { return [] }
            let b = [UInt8](data)
            func le32(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24 }
            var out: [[UInt8]] = []
            while offset + 16 <= b.count {
                let caplen = le32(offset + 8)
                guard offset + 16 + caplen <= b.count else { break }
                if let ip = IPPacket.ipv4(ofEthernet: Array(b[offset + 16 ..< offset + 16 + caplen])) { out.append(ip) }
                offset += 16 + caplen
            }
            return out
        }
    }

    /// A connection's source port as Sluice and the kernel chose it.
    struct PortKey: Hashable { var proto: UInt8; var nat: UInt32; var port: UInt16; var remote: UInt32; var remotePort: UInt16 }
    struct Remote: Hashable { var proto: UInt8; var nat: UInt32; var remote: UInt32; var remotePort: UInt16 }

    func compare(_ s: NATScenario, file: StaticString = #filePath, line: UInt = #line) throws {
        if let missing = prerequisites() {
            let msg = "SKIPPED: NATKernelDifferentialTests needs root, network namespaces, iptables, tcpreplay, tcpdump, ethtool (\(missing))"
            print(String(repeating: "!", count: 80) + "\n" + msg + "\n" + String(repeating: "!", count: 80))
            if ProcessInfo.processInfo.environment["CI"] == "true" { XCTFail(msg + " — required on CI", file: file, line: line) }
            return
        }
        let started = Date()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-natkd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }

        // Sluice.
        _ = try Replayer.run(s.options(outDir: work + "/sluice"))
        let sluice = try ReplayRun(outDir: work + "/sluice", interfaces: s.interfaces)
        let frames = try s.mergedInputs()
        XCTAssertEqual(frames.count, sluice.verdicts.count, file: file, line: line)
        let routerAddrs = try s.routerAddresses()
        /// The box's own packets: sourced from its addresses and an ICMP error/reply or a reset.
        func isOwn(_ ip: [UInt8]) -> Bool {
            let p = IPPacket(ip)
            guard routerAddrs.contains(p.src.value) else { return false }
            return p.proto == 1 && p.icmpType != 8 || p.proto == 6 && p.tcpFlags & 0x04 != 0
        }

        // The kernel: fresh namespaces, unique prefix, deleted even on failure.
        let tag = "snk\(getpid() % 100000)x\(String(UInt32.random(in: 0 ... 0xFFFFF), radix: 36))"
        let router = tag + "r"
        func peer(_ iface: String) -> String { tag + "p" + iface.suffix(1) }
        let namespaces = [router] + s.interfaces.map(peer)
        var dumps: [Process] = []
        defer {
            for d in dumps where d.isRunning { kill(d.processIdentifier, SIGTERM); d.waitUntilExit() }
            for ns in namespaces { _ = try? Self.sh(["ip", "netns", "del", ns], allowFailure: true) }
        }
        for ns in namespaces {
            try Self.sh(["ip", "netns", "add", ns])
            try Self.sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            try Self.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        }
        // Redirects off before the links exist (a hairpin leaves by the interface it came in on),
        // no ICMP rate limit.
        try Self.sh(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0",
                     "net.ipv4.conf.default.send_redirects=0", "net.ipv4.icmp_ratemask=0"])
        for iface in s.interfaces {
            try Self.sh(["ip", "link", "add", iface, "netns", router, "address", Self.mac(NATScenario.routerMAC[iface]!),
                         "type", "veth", "peer", "name", "p", "netns", peer(iface), "address", Self.mac(Self.peerMAC[iface]!)])
            // Full checksums on what the router sends (a veth would leave them to the peer).
            try Self.sh(["ip", "netns", "exec", router, "ethtool", "-K", iface, "tx", "off"])
            try Self.sh(["ip", "-n", router, "link", "set", iface, "up"])
            try Self.sh(["ip", "-n", peer(iface), "link", "set", "p", "up"])
        }
        let networkLines = try String(contentsOfFile: NATScenario.repo(s.network), encoding: .utf8).split(separator: "\n").map(String.init)
        for line in networkLines {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            try Self.sh(["ip", "netns", "exec", router] + words)
        }
        // Static neighbours (no ARP): every gateway of the model, and the next hop of every
        // address the injected packets carry.
        var neighbours: Set<String> = []
        func neighbour(_ addr: String, _ dev: String) throws {
            guard let m = Self.peerMAC[dev], neighbours.insert(addr + "@" + dev).inserted else { return }
            try Self.sh(["ip", "-n", router, "neigh", "replace", addr, "lladdr", Self.mac(m), "dev", dev, "nud", "permanent"])
        }
        for line in networkLines {
            let w = line.split(separator: " ").map(String.init)
            if let v = w.firstIndex(of: "via"), v + 1 < w.count, let d = w.firstIndex(of: "dev"), d + 1 < w.count { try neighbour(w[v + 1], w[d + 1]) }
        }
        var hosts: Set<UInt32> = []
        for f in frames { let p = IPPacket(IPPacket.ipv4(ofEthernet: f.frame)!); hosts.insert(p.src.value); hosts.insert(p.dst.value) }
        for h in hosts.sorted() where !routerAddrs.contains(h) {
            let route = try Self.sh(["ip", "-n", router, "-4", "-o", "route", "get", "\(IPv4Address(h))"], allowFailure: true)
            let w = route.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
            guard let first = w.first, !["local", "broadcast", "multicast", "RTNETLINK"].contains(first),
                  let d = w.firstIndex(of: "dev"), d + 1 < w.count else { continue }
            try neighbour(w.firstIndex(of: "via").map { w[$0 + 1] } ?? "\(IPv4Address(h))", w[d + 1])
        }
        try Self.sh(["ip", "netns", "exec", router, "iptables-restore", NATScenario.repo(s.rules)])

        // Capture what leaves each router interface (arriving at its peer).
        var tails: [String: PcapTail] = [:]
        for iface in s.interfaces {
            let path = work + "/kernel-\(iface).pcap"
            let d = Process()
            d.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            d.arguments = ["ip", "netns", "exec", peer(iface), "tcpdump", "-i", "p", "-Q", "in", "-U", "--immediate-mode", "-n", "-s", "0", "-w", path, "ip"]
            d.standardOutput = FileHandle.nullDevice
            d.standardError = FileHandle.nullDevice
            try d.run()
            dumps.append(d)
            tails[iface] = PcapTail(path)
        }
        var ready = false
        for _ in 0 ..< 50 where !ready {
            usleep(100_000)
            ready = s.interfaces.allSatisfy { (try? FileManager.default.attributesOfItem(atPath: work + "/kernel-\($0).pcap")[.size] as? Int).map { $0 >= 24 } ?? false }
        }
        XCTAssertTrue(ready, "tcpdump did not start", file: file, line: line)
        usleep(300_000)

        // Inject frame by frame; compare what each made leave.
        var kernelPort: [PortKey: UInt16] = [:]
        var takenSluice: [Remote: Set<UInt16>] = [:], takenKernel: [Remote: Set<UInt16>] = [:]
        var failures: [String] = []
        var ownKernel = 0, choices: [String] = []
        func fail(_ m: String) { if failures.count < 12 { failures.append(m) } }
        func choice(for p: IPPacket) -> ClosedRange<UInt16>? {
            s.portChoice.first { $0.address == p.src && ($0.remote == nil || $0.remote == p.dst) }?.range
        }
        for (k, f) in frames.enumerated() {
            // Replies to a connection whose port the kernel chose differently go to the kernel's port.
            var ip = IPPacket(IPPacket.ipv4(ofEthernet: f.frame)!)
            if ip.hasPorts, let kp = kernelPort[PortKey(proto: ip.proto, nat: ip.dst.value, port: ip.dport, remote: ip.src.value, remotePort: ip.sport)], kp != ip.dport {
                ip.setBE16(ip.hl + 2, kp)
                ip = ip.withL4ChecksumFixed()
            }
            let frame = Array(f.frame[0 ..< 14]) + ip.bytes
            let path = work + "/inject-\(k).pcap"
            try PcapWriter.encode(frames: [(bytes: frame, timestampNanos: Int64(k) * 1000)], linkTypeRaw: 1, resolution: .microsecond)
                .withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: path)) }
            try Self.sh(["ip", "netns", "exec", peer(f.iface), "tcpreplay", "-q", "-t", "-i", "p", path])

            let expected = sluice.outputs[k].filter { !isOwn($0.ip) }
            var want: [String: Int] = [:]
            for o in expected { want[o.iface, default: 0] += 1 }
            var got: [String: [[UInt8]]] = [:]
            let deadline = Date().addingTimeInterval(expected.isEmpty ? 0.03 : 1.0)
            repeat {
                for iface in s.interfaces {
                    for p in tails[iface]!.next() { if isOwn(p) { ownKernel += 1 } else { got[iface, default: []].append(p) } }
                }
                if !expected.isEmpty && s.interfaces.allSatisfy({ got[$0, default: []].count >= want[$0, default: 0] }) { break }
                usleep(2_000)
            } while Date() < deadline
            let v = sluice.verdicts[k]
            let what = "packet \(k) in \(f.iface) (\(IPPacket(IPPacket.ipv4(ofEthernet: f.frame)!)); sluice: \(v["verdict"] ?? "?") \(v["ct"] ?? "?") out \(v["out"] ?? "?"))"
            for iface in s.interfaces {
                let sp = expected.filter { $0.iface == iface }.map(\.ip)
                let kp = got[iface, default: []]
                if sp.count != kp.count {
                    fail("\(what): out \(iface) sluice \(sp.count) packets, kernel \(kp.count)\(kp.map { "\n  kernel " + hexString($0) }.joined())")
                    continue
                }
                for (a, b) in zip(sp, kp) {
                    var sPkt = IPPacket(a)
                    let kPkt = IPPacket(b)
                    if !sPkt.ipChecksumOK || !sPkt.l4ChecksumOK { fail("\(what): Sluice's packet out \(iface) has a bad checksum: \(hexString(a))") }
                    if sPkt.hasPorts, let range = choice(for: sPkt) {
                        let key = PortKey(proto: sPkt.proto, nat: sPkt.src.value, port: sPkt.sport, remote: sPkt.dst.value, remotePort: sPkt.dport)
                        let remote = Remote(proto: sPkt.proto, nat: sPkt.src.value, remote: sPkt.dst.value, remotePort: sPkt.dport)
                        if let kport = kernelPort[key] {
                            if kport != sPkt.sport { sPkt.setBE16(sPkt.hl, kport); sPkt = sPkt.withL4ChecksumFixed() }
                        } else if kPkt.bytes.count == sPkt.bytes.count && kPkt.hasPorts && kPkt.src == sPkt.src {
                            // A new connection: both choices must be in range and free.
                            var mapped = sPkt
                            mapped.setBE16(mapped.hl, kPkt.sport)
                            mapped = mapped.withL4ChecksumFixed()
                            if mapped == kPkt {
                                if !range.contains(sPkt.sport) || takenSluice[remote, default: []].contains(sPkt.sport) {
                                    fail("\(what): Sluice chose port \(sPkt.sport), out of \(range) or taken")
                                }
                                if !range.contains(kPkt.sport) || takenKernel[remote, default: []].contains(kPkt.sport) {
                                    fail("\(what): kernel chose port \(kPkt.sport), out of \(range) or taken (harness assumption broken)")
                                }
                                takenSluice[remote, default: []].insert(sPkt.sport)
                                takenKernel[remote, default: []].insert(kPkt.sport)
                                kernelPort[key] = kPkt.sport
                                if kPkt.sport != sPkt.sport { choices.append("\(sPkt.src):\(sPkt.sport)→kernel \(kPkt.sport) (to \(sPkt.dst):\(sPkt.dport))") }
                                sPkt = mapped
                            }
                        }
                    }
                    if sPkt != kPkt {
                        fail("\(what): packet out \(iface) differs\n  kernel \(hexString(b))\n  sluice \(hexString(sPkt.bytes))")
                    }
                }
            }
        }
        usleep(200_000)
        for iface in s.interfaces {
            let late = tails[iface]!.next().filter { !isOwn($0) }
            if !late.isEmpty { fail("kernel sent \(late.count) more packets out of \(iface) after the last frame: \(late.map(hexString))") }
        }
        for d in dumps { kill(d.processIdentifier, SIGINT); d.waitUntilExit() }

        // Counters of every table Sluice loaded, OUTPUT chains excepted.
        let kernelSave = try Self.sh(["ip", "netns", "exec", router, "iptables-save", "-c"])
        let ours = try String(contentsOfFile: work + "/sluice/counters.rules", encoding: .utf8)
        let kc = Self.counters(kernelSave), sc = Self.counters(ours)
        XCTAssertGreaterThan(sc.count, 0, file: file, line: line)
        for (chain, c) in sc.sorted(by: { $0.key < $1.key }) {
            guard let k = kc[chain] else { fail("chain \(chain) missing in the kernel's iptables-save"); continue }
            if k != c { fail("counters of \(chain): kernel \(k.joined(separator: " ")), sluice \(c.joined(separator: " "))") }
        }
        print("NATKernelDifferentialTests \(s.name): \(frames.count) frames, \(sluice.outputs.joined().count) packets out, " +
              "\(ownKernel) of the kernel's own left out, port choices \(choices.isEmpty ? "identical" : choices.joined(separator: ", ")), " +
              String(format: "%.1f s", Date().timeIntervalSince(started)))
        for m in failures { XCTFail("\(s.name): \(m)", file: file, line: line) }
    }

    /// `table:CHAIN` -> [policy counters (built-in chains), rule counters...], OUTPUT chains left
    /// out; read from the counter columns of `iptables-save -c` text only.
    static func counters(_ text: String) -> [String: [String]] {
        var out: [String: [String]] = [:]
        var table = ""
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            if raw.hasPrefix("*") { table = String(raw.dropFirst()); continue }
            let w = raw.split(separator: " ")
            if raw.hasPrefix(":"), w.count >= 3 {
                let name = String(w[0].dropFirst())
                if name != "OUTPUT" { out[table + ":" + name] = w[1] == "-" ? [] : ["policy " + w[2]] }
            } else if raw.hasPrefix("["), w.count >= 3, w[1] == "-A", w[2] != "OUTPUT" {
                out[table + ":" + w[2], default: []].append(String(w[0]))
            }
        }
        return out
    }

    static func mac(_ m: [UInt8]) -> String { m.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":") }
}

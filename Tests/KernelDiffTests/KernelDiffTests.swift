import Foundation
import Rules
import Wire
import XCTest

/// A battery of small stateless cases, each run through the kernel's netfilter (in namespaces,
/// see `KernelHarness`) and through Sluice; per-rule counters of every chain except OUTPUT of
/// the tables a case declares (raw, mangle, filter, security), the forwarded packets per
/// interface and, where a case opts in, the box's own packets (REJECT replies, time exceeded)
/// must agree, except for the cases listed in
/// `knownDifferences`, which must still differ (so that a fix shows up as a failure here and
/// the entry gets removed).
///
/// The battery runs twice: against iptables-nft (Debian 12's `iptables-restore`, which turns
/// `-p tcp --dport` into native nft payload matches) and against iptables-legacy (the xtables
/// `tcp`/`udp` matches). They differ on tinygrams, see below.
final class KernelDiffTests: XCTestCase {
    /// Cases where Sluice and the kernel disagree today, per backend, with what each does.
    /// Remove an entry when the engine is fixed; the test fails while a listed case agrees.
    static let knownDifferences: [IptablesBackend: [String: String]] = {
        // Both backends: the routing/IP layer in front of the filter table.
        // (multicast to 224.0.0.1, 127/8 destinations from outside, Record Route and source-route
        // options used to differ here and are fixed.)
        // (statistic nth's starting count, open --length ranges, forwarding of link-broadcast
        // frames and TCPMSS adding a missing option were fixed after this battery found them.)
        let both: [String: String] = [:]
        // iptables-nft only: Debian 12's default `iptables-restore` turns `-p tcp|udp --dport/--sport P`,
        // `! --dport P` and ranges a:b, :b, a: into native nft payload loads at the transport
        // header (full ranges 0:65535 keep the xtables `udp`/`tcp` match). Those loads do not
        // look at the fragment offset and only need the two bytes they read, so they differ from
        // xtables' tcp/udp matches, which Sluice implements (and which agree under legacy).
        let nftOnly = [
            "fragments":
                "Later fragments (offset 16 and 32, UDP; offset 24, TCP) whose first payload bytes read as ports 53/80: "
                + "nft's native `udp dport 53`, `udp sport 53` and `tcp dport 80` match those bytes (counted), the full-range "
                + "`--dport 0:65535` (xt match) does not; Sluice, like xtables, never matches ports on a fragment with offset > 0. "
                + "Forwarded packets agree.",
            "tinygram":
                "First fragments with 2, 8 and 16 bytes of TCP and 4 bytes of UDP: nft matches `-p tcp --dport 80` when "
                + "bytes 2-3 are present (8 and 16 bytes), `--sport` with 2 bytes, and forwards all of them; Sluice, like "
                + "xtables' tcp/udp matches, hotdrops them at the first port rule (reason hotdrop), so nothing is forwarded.",
        ]
        return [.nft: both.merging(nftOnly) { a, _ in a }, .legacy: both]
    }()

    func testBatteryAgainstIptablesNft() throws { try runBattery(.nft) }
    func testBatteryAgainstIptablesLegacy() throws { try runBattery(.legacy) }

    func runBattery(_ backend: IptablesBackend) throws {
        guard let h = try KernelHarness.make(backend: backend) else { return }
        defer { h.close() }
        let known = Self.knownDifferences[backend] ?? [:]
        var report: [String] = []
        let t0 = Date()
        for c in Self.cases {
            let r: CaseResult
            do { r = try h.run(c) } catch {
                XCTFail("[\(backend)] \(c.name): harness error: \(error)")
                continue
            }
            // Every case must make the kernel count or forward something, or it proves nothing.
            let kernelHits = r.kernel.chains.values.reduce(UInt64(0)) { s, c in
                s + (c.policy?.packets ?? 0) + c.rules.reduce(0) { $0 + $1.packets }
            }
            XCTAssertGreaterThan(kernelHits + UInt64(r.kernel.forwarded.values.joined().count), 0, "[\(backend)] \(c.name): kernel saw nothing")
            if c.compareOwnPackets {
                XCTAssertGreaterThan(r.kernel.own.values.joined().count, 0, "[\(backend)] \(c.name): compares own packets, the kernel sent none")
            }
            let refused = r.sluiceError.map { "SLUICE REFUSED THE CASE: \($0)\n" } ?? ""
            let detail = refused + "kernel (own packets per interface, compared only where the case opts in: \(r.kernelOwnPackets.filter { $0.value > 0 })):\n\(r.kernel)sluice:\n\(r.sluice)sluice verdicts:\n\(r.sluiceVerdicts)"
            if ProcessInfo.processInfo.environment["KDIFF_VERBOSE"] != nil {
                print("CASE [\(backend)] \(c.name) agree=\(r.agree)\n\(detail)")
            }
            if let why = known[c.name] {
                XCTAssertFalse(r.agree, "[\(backend)] \(c.name) now agrees with the kernel; remove it from knownDifferences (\(why))")
                report.append("KNOWN DIFFERENCE [\(backend)] \(c.name): \(why)\n\(detail)")
            } else if !r.agree {
                XCTFail("[\(backend)] \(c.name): Sluice differs from the kernel\n\(detail)")
            }
            if r.sluiceError == nil {
                XCTAssertEqual(r.kernel.chains.keys.sorted(), r.sluice.chains.keys.sorted(), "[\(backend)] \(c.name): chains")
            }
            if known[c.name] == nil {
                // Implied by `agree`; named here so a failure says which interface's bytes differ.
                XCTAssertEqual(r.kernel.forwardedBytes.filter { $0.value > 0 }, r.sluice.forwardedBytes.filter { $0.value > 0 },
                               "[\(backend)] \(c.name): forwarded bytes per interface")
            }
        }
        if !report.isEmpty { print(report.joined(separator: "\n")) }
        print("KernelDiffTests[\(backend)]: \(Self.cases.count) cases in \(String(format: "%.2f", Date().timeIntervalSince(t0))) s")
    }

    // MARK: the cases

    static let wan = IPv4Address(198, 51, 100, 7)       // a host on the internet, behind eth0's default route
    static let wan2 = IPv4Address(203, 0, 113, 50)      // a host on eth0's subnet
    static let lan = IPv4Address(192, 168, 1, 50)       // a host on eth1's subnet
    static let lan2 = IPv4Address(192, 168, 1, 60)
    static let routerWAN = IPv4Address(203, 0, 113, 1)
    static let routerLAN = IPv4Address(192, 168, 1, 1)

    /// One table in iptables-restore form: its built-in chains (ACCEPT), user chains, rule lines.
    static func table(_ name: String, chains: [String] = [], _ lines: [String]) -> String {
        let builtins = KernelHarness.tables.first { $0.name == name }!.chains
        return (["*" + name] + builtins.map { ":\($0) ACCEPT [0:0]" } + chains.map { ":\($0) - [0:0]" } + lines + ["COMMIT"])
            .joined(separator: "\n") + "\n"
    }

    /// A filter table with the given policies, user chains and rule lines.
    static func filter(input: String = "ACCEPT", forward: String = "ACCEPT", chains: [String] = [], _ lines: [String]) -> String {
        ([":INPUT \(input) [0:0]", ":FORWARD \(forward) [0:0]", ":OUTPUT ACCEPT [0:0]"] + chains.map { ":\($0) - [0:0]" } + lines)
            .joined(separator: "\n")
    }

    static func tcp(_ s: IPv4Address, _ sp: UInt16, _ d: IPv4Address, _ dp: UInt16, ttl: UInt8 = 64, flags: TCPFlags = .syn) -> [UInt8] {
        PacketBuilder.tcp(source: s, destination: d, sourcePort: sp, destinationPort: dp, sequence: 1000, flags: flags, ttl: ttl)
    }

    static func udp(_ s: IPv4Address, _ sp: UInt16, _ d: IPv4Address, _ dp: UInt16, ttl: UInt8 = 64, payload: Int = 12) -> [UInt8] {
        PacketBuilder.udp(source: s, destination: d, sourcePort: sp, destinationPort: dp, payload: Array(repeating: 0x5a, count: payload), ttl: ttl)
    }

    static func ping(_ s: IPv4Address, _ d: IPv4Address, ttl: UInt8 = 64) -> [UInt8] {
        PacketBuilder.icmpEcho(source: s, destination: d, request: true, identifier: 7, sequence: 1, payload: Array(repeating: 0x61, count: 16), ttl: ttl)
    }

    /// A packet of an arbitrary protocol number with an 8-byte payload.
    static func raw(_ s: IPv4Address, _ d: IPv4Address, proto: UInt8) -> [UInt8] {
        PacketBuilder.ipv4(source: s, destination: d, proto: proto, payload: [0, 0, 8, 0, 1, 2, 3, 4], dontFragment: false)
    }

    /// A fragment carrying `payload` at `offset` (bytes, a multiple of 8).
    static func fragment(_ s: IPv4Address, _ d: IPv4Address, proto: UInt8, offset: Int, more: Bool, payload: [UInt8], id: UInt16 = 0x4242) -> [UInt8] {
        PacketBuilder.ipv4(source: s, destination: d, proto: proto, payload: payload, identification: id, dontFragment: false,
                           fragmentOffset: offset, moreFragments: more)
    }

    /// An ICMP echo reply: to the router it needs no answer, so the kernel sends nothing back
    /// (a local UDP packet with no socket would get a port unreachable through mangle POSTROUTING).
    static func pong(_ s: IPv4Address, _ d: IPv4Address, ttl: UInt8 = 64) -> [UInt8] {
        PacketBuilder.icmpEcho(source: s, destination: d, request: false, identifier: 7, sequence: 1, payload: Array(repeating: 0x62, count: 16), ttl: ttl)
    }

    /// A TCP segment with options (e.g. MSS: [2, 4, hi, lo]).
    static func tcpOptions(_ s: IPv4Address, _ sp: UInt16, _ d: IPv4Address, _ dp: UInt16, flags: TCPFlags = .syn, options: [UInt8]) -> [UInt8] {
        PacketBuilder.tcp(source: s, destination: d, sourcePort: sp, destinationPort: dp, sequence: 1000, flags: flags, options: options)
    }

    static func be16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xff)] }

    static let cases: [KernelCase] = {
        let (wan, wan2, lan, lan2, rw, rl) = (KernelDiffTests.wan, KernelDiffTests.wan2, KernelDiffTests.lan, KernelDiffTests.lan2, KernelDiffTests.routerWAN, KernelDiffTests.routerLAN)
        var cs: [KernelCase] = []

        // Protocols by name, by number, `all`, and negated.
        cs.append(KernelCase("protocols", rules: filter([
            "-A FORWARD -p tcp", "-A FORWARD -p 17", "-A FORWARD -p icmp", "-A FORWARD -p all", "-A FORWARD ! -p tcp",
            "-A FORWARD -p 47", "-A FORWARD ! -p 47", "-A FORWARD -p udp -j ACCEPT", "-A FORWARD -p 47 -j DROP",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 80)), .init("eth0", udp(wan, 5000, lan, 53)), .init("eth0", ping(wan, lan)),
            .init("eth1", raw(lan, wan, proto: 47)), .init("eth1", raw(lan, wan, proto: 50)), .init("eth1", tcp(lan, 40001, wan, 443)),
            .init("eth1", udp(lan, 5001, wan, 123)),
        ]))

        // Source and destination prefixes /0 /8 /24 /32, host bits in the prefix, negation.
        cs.append(KernelCase("addresses", rules: filter([
            "-A FORWARD -s 0.0.0.0/0", "-A FORWARD -s 198.0.0.0/8", "-A FORWARD -s 198.51.100.0/24", "-A FORWARD -s 198.51.100.7/32",
            "-A FORWARD ! -s 198.51.100.0/24", "-A FORWARD -d 192.168.1.0/24", "-A FORWARD ! -d 192.168.1.50",
            "-A FORWARD -d 10.0.0.0/8", "-A FORWARD -s 198.51.100.99/24", "-A FORWARD -s 198.51.100.7 -d 192.168.1.50/32",
            "-A FORWARD ! -s 192.168.0.0/16 ! -d 192.168.1.60", "-A FORWARD -s 192.168.1.50 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 2)), .init("eth0", udp(wan, 1, lan2, 2)), .init("eth0", udp(IPv4Address(198, 51, 101, 7), 1, lan, 2)),
            .init("eth0", udp(IPv4Address(8, 8, 8, 8), 1, lan2, 2)), .init("eth0", udp(IPv4Address(198, 51, 100, 200), 1, lan, 2)),
            .init("eth1", udp(lan, 1, wan, 2)), .init("eth1", udp(lan2, 1, IPv4Address(10, 1, 2, 3), 2)), .init("eth1", udp(lan2, 1, wan2, 2)),
        ]))

        // Interfaces: exact, `+` wildcards, negation.
        cs.append(KernelCase("interfaces", rules: filter([
            "-A FORWARD -i eth0", "-A FORWARD -i eth1", "-A FORWARD -o eth1", "-A FORWARD -i eth+", "-A FORWARD -o eth+",
            "-A FORWARD ! -i eth0", "-A FORWARD ! -o eth+", "-A FORWARD -i et+", "-A FORWARD -i eth", "-A FORWARD -i eth0+",
            "-A FORWARD -i + -o eth0", "-A FORWARD ! -i eth+", "-A FORWARD -i eth1 -o eth1", "-A FORWARD -i eth0 -o eth0",
            "-A INPUT -i eth0", "-A INPUT ! -i eth1", "-A INPUT -i eth+",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 2)), .init("eth1", udp(lan, 1, wan, 2)), .init("eth0", udp(wan, 1, wan2, 2)),
            .init("eth1", udp(lan, 1, lan2, 2)), .init("eth0", udp(wan, 1, rw, 2)), .init("eth1", udp(lan, 1, rw, 2)),
        ]))

        // Ports: single, ranges a:b, :b, a:, negated, service names, both protocols.
        cs.append(KernelCase("ports", rules: filter([
            "-A FORWARD -p tcp --dport 22", "-A FORWARD -p tcp --dport 1000:2000", "-A FORWARD -p tcp --dport :1023",
            "-A FORWARD -p tcp --dport 1024:", "-A FORWARD -p tcp ! --dport 22", "-A FORWARD -p tcp --sport 53",
            "-A FORWARD -p tcp ! --sport 1:1023", "-A FORWARD -p tcp --dport ssh", "-A FORWARD -p udp --sport domain",
            "-A FORWARD -p udp --dport domain", "-A FORWARD -p udp ! --dport 0:52", "-A FORWARD -p udp --sport 5000:5000 --dport 53",
            "-A FORWARD -p tcp --dport 0", "-A FORWARD -p tcp --dport 65535", "-A FORWARD -p tcp --sport 1024: --dport :1023 -j ACCEPT",
            "-A FORWARD -p udp ! --sport 53 -j DROP",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 22)), .init("eth0", tcp(wan, 53, lan, 1000)), .init("eth0", tcp(wan, 1023, lan, 2000)),
            .init("eth0", tcp(wan, 1024, lan, 2001)), .init("eth0", tcp(wan, 0, lan, 0)), .init("eth0", tcp(wan, 65535, lan, 65535)),
            .init("eth0", tcp(wan, 1, lan, 1023)), .init("eth0", tcp(wan, 2, lan, 1024)),
            .init("eth1", udp(lan, 5000, wan, 53)), .init("eth1", udp(lan, 53, wan, 52)), .init("eth1", udp(lan, 53, wan, 0)),
            .init("eth1", udp(lan, 5353, wan, 5353)), .init("eth1", udp(lan, 1, wan, 65535)),
        ]))

        // `-m tcp`/`-m udp` before or after `-p`, with a comment.
        cs.append(KernelCase("match-module-order", rules: filter([
            "-A FORWARD -m tcp -p tcp --dport 80", "-A FORWARD -p tcp -m tcp --dport 80", "-A FORWARD -p udp -m udp --sport 53",
            "-A FORWARD -m udp -p udp --dport 53", "-A FORWARD -p tcp -m comment --comment \"web traffic\" -m tcp --dport 80:88",
            "-A FORWARD -m comment --comment x -p udp -m udp ! --dport 53",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 80)), .init("eth0", tcp(wan, 40000, lan, 88)), .init("eth0", tcp(wan, 40000, lan, 89)),
            .init("eth1", udp(lan, 53, wan, 53)), .init("eth1", udp(lan, 54, wan, 54)),
        ]))

        // User chains: jump, RETURN, nesting, fall off the end.
        cs.append(KernelCase("user-chains-jump-return", rules: filter(forward: "DROP", chains: ["CHK1", "CHK2"], [
            "-A FORWARD -j CHK1", "-A FORWARD -p tcp -j ACCEPT", "-A FORWARD -p udp --dport 9",
            "-A CHK1 -p tcp --dport 22 -j RETURN", "-A CHK1 -s 198.51.100.0/24 -j CHK2", "-A CHK1 -p icmp -j DROP", "-A CHK1 -p udp --dport 7 -j ACCEPT",
            "-A CHK2 -p udp --dport 53 -j ACCEPT", "-A CHK2 -p tcp -j RETURN", "-A CHK2 -p udp --dport 9 -j RETURN", "-A CHK2 -p udp",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 22)), .init("eth0", tcp(wan, 40000, lan, 80)), .init("eth0", udp(wan, 1, lan, 53)),
            .init("eth0", udp(wan, 1, lan, 9)), .init("eth0", udp(wan, 1, lan, 7)), .init("eth0", udp(wan, 1, lan, 8)),
            .init("eth0", ping(wan, lan)), .init("eth1", udp(lan, 1, wan, 7)), .init("eth1", udp(lan, 1, wan, 9)), .init("eth1", ping(lan, wan)),
        ]))

        // goto: end of the goto'd chain (and RETURN in it) goes to the policy of the calling
        // built-in chain when entered from it, or back behind the jump that led to the chain
        // that did the goto.
        cs.append(KernelCase("goto", rules: filter(forward: "DROP", chains: ["G1", "J1", "G2"], [
            "-A FORWARD -p udp -g G1", "-A FORWARD -p tcp -j J1", "-A FORWARD -p tcp --dport 443 -j ACCEPT", "-A FORWARD -j ACCEPT",
            "-A G1 -p udp --dport 53 -j ACCEPT", "-A G1 -p udp --dport 54 -j RETURN", "-A G1 -p udp --dport 55",
            "-A J1 -p tcp --dport 80 -j ACCEPT", "-A J1 -g G2", "-A J1 -j DROP",
            "-A G2 -p tcp --dport 22 -j ACCEPT", "-A G2 -p tcp --dport 23 -j RETURN", "-A G2 -p tcp --dport 24 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 53)), .init("eth0", udp(wan, 1, lan, 54)), .init("eth0", udp(wan, 1, lan, 55)),
            .init("eth0", udp(wan, 1, lan, 56)), .init("eth0", tcp(wan, 40000, lan, 80)), .init("eth0", tcp(wan, 40000, lan, 22)),
            .init("eth0", tcp(wan, 40000, lan, 23)), .init("eth0", tcp(wan, 40000, lan, 24)), .init("eth0", tcp(wan, 40000, lan, 443)),
            .init("eth0", tcp(wan, 40000, lan, 25)), .init("eth0", ping(wan, lan)),
        ]))

        // DROP policies, rules without target, RETURN in a built-in chain.
        cs.append(KernelCase("drop-policy-no-target", rules: filter(input: "DROP", forward: "DROP", [
            "-A INPUT -p udp", "-A INPUT -p udp --dport 53 -j ACCEPT", "-A INPUT -s 198.51.100.0/24",
            "-A FORWARD -i eth1", "-A FORWARD -i eth1 -o eth0 -j ACCEPT", "-A FORWARD -p tcp --dport 25 -j RETURN",
            "-A FORWARD -p tcp", "-A FORWARD -p tcp --dport 80 -j ACCEPT",
        ]), packets: [
            .init("eth0", udp(wan, 1, rw, 53)), .init("eth0", udp(wan, 1, rw, 54)), .init("eth0", tcp(wan, 40000, rw, 22)),
            .init("eth1", udp(lan, 1, wan, 5)), .init("eth0", tcp(wan, 40000, lan, 25)), .init("eth0", tcp(wan, 40000, lan, 80)),
            .init("eth0", tcp(wan, 40000, lan, 81)), .init("eth0", udp(wan, 1, lan, 5)),
        ]))

        // INPUT vs FORWARD by destination: local addresses (either interface's), subnet
        // broadcasts, the limited broadcast, all-hosts multicast, another host on each side,
        // a hairpin (in and out of eth0), a martian destination.
        cs.append(KernelCase("input-vs-forward", rules: filter([
            "-A INPUT -i eth0", "-A INPUT -i eth1", "-A INPUT -d 192.168.1.255", "-A INPUT -d 255.255.255.255", "-A INPUT -d 224.0.0.0/4",
            "-A INPUT -d 203.0.113.1", "-A INPUT -d 192.168.1.1",
            "-A FORWARD -i eth0 -o eth1", "-A FORWARD -i eth1 -o eth0", "-A FORWARD -i eth0 -o eth0", "-A FORWARD -d 192.168.1.255",
        ]), packets: [
            .init("eth0", udp(wan, 1, rw, 9)), .init("eth0", udp(wan, 1, rl, 9)), .init("eth1", udp(lan, 1, rl, 9)),
            .init("eth1", udp(lan, 1, IPv4Address(192, 168, 1, 255), 9)), .init("eth0", udp(wan, 1, IPv4Address(192, 168, 1, 255), 9)),
            .init("eth0", udp(wan2, 1, IPv4Address(203, 0, 113, 255), 9)), .init("eth1", udp(lan, 68, IPv4Address(255, 255, 255, 255), 67)),
            .init("eth0", udp(wan, 1, lan, 9)), .init("eth1", udp(lan, 1, wan, 9)), .init("eth0", udp(wan, 1, wan2, 9)),
        ]))
        // All-hosts multicast to the router: the kernel delivers it (the interface is in
        // 224.0.0.1) and never forwards multicast without a multicast routing daemon.
        cs.append(KernelCase("multicast-all-hosts", rules: filter([
            "-A INPUT -d 224.0.0.0/4", "-A INPUT -i eth1", "-A FORWARD -d 224.0.0.0/4", "-A FORWARD -i eth1",
        ]), packets: [
            .init("eth1", udp(lan, 1, IPv4Address(224, 0, 0, 1), 9)), .init("eth1", udp(lan, 1, rl, 9)),
        ]))
        // A loopback destination arriving on eth0: a martian destination for the kernel's
        // ip_route_input_slow (route_localnet=0), dropped before INPUT.
        cs.append(KernelCase("martian-loopback-destination", rules: filter([
            "-A INPUT -i eth0", "-A INPUT -d 127.0.0.0/8", "-A FORWARD -i eth0",
        ]), packets: [
            .init("eth0", udp(wan, 1, IPv4Address(127, 0, 0, 1), 9)), .init("eth0", udp(wan, 1, rw, 9)),
        ]))

        // TTL: 1 and 0 on forwarded packets (the kernel's ip_forward drops them before the
        // FORWARD hook and sends time exceeded), 2 forwarded with 1, 1 delivered locally.
        cs.append(KernelCase("ttl", rules: filter([
            "-A INPUT -p udp", "-A FORWARD -p udp", "-A FORWARD -p tcp", "-A FORWARD -p icmp",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 9, ttl: 1)), .init("eth0", tcp(wan, 40000, lan, 80, ttl: 1)), .init("eth1", ping(lan, wan, ttl: 1)),
            .init("eth0", udp(wan, 1, lan, 10, ttl: 0)), .init("eth0", udp(wan, 1, lan, 11, ttl: 2)), .init("eth0", udp(wan, 1, rw, 12, ttl: 1)),
        ]))

        // Fragments: a first fragment with the whole L4 header, later fragments whose first
        // bytes look like ports 53/80 (only `-p` may match them, not port matches).
        let udpFirst = KernelDiffTests.be16(5000) + KernelDiffTests.be16(53) + KernelDiffTests.be16(40) + KernelDiffTests.be16(0) + Array(repeating: 0x11, count: 8)
        let lookLike53 = KernelDiffTests.be16(53) + KernelDiffTests.be16(53) + Array(repeating: 0x22, count: 12)
        let lookLike80 = KernelDiffTests.be16(80) + KernelDiffTests.be16(80) + Array(repeating: 0x33, count: 12)
        cs.append(KernelCase("fragments", rules: filter([
            "-A FORWARD -p udp", "-A FORWARD -p udp --dport 53", "-A FORWARD -p udp --sport 53", "-A FORWARD -p udp ! --dport 53",
            "-A FORWARD -p tcp", "-A FORWARD -p tcp --dport 80", "-A FORWARD -p tcp ! --dport 80", "-A FORWARD -p tcp --dport 0:65535",
            "-A FORWARD -p udp --dport 0:65535 -j ACCEPT",
        ]), packets: [
            .init("eth0", fragment(wan, lan, proto: 17, offset: 0, more: true, payload: udpFirst)),
            .init("eth0", fragment(wan, lan, proto: 17, offset: 16, more: true, payload: lookLike53)),
            .init("eth0", fragment(wan, lan, proto: 17, offset: 32, more: false, payload: Array(lookLike53[0 ..< 8]))),
            .init("eth1", fragment(lan, wan, proto: 6, offset: 24, more: false, payload: lookLike80, id: 0x4343)),
        ]))

        // Tinygrams: first fragments too short for the ports/TCP header. xtables' tcp match
        // (legacy) needs the whole 20-byte TCP header and udp the 8-byte UDP header, or it
        // hotdrops; nft's payload match only needs the bytes it loads.
        cs.append(KernelCase("tinygram", rules: filter([
            "-A FORWARD -p tcp", "-A FORWARD -p tcp --dport 80", "-A FORWARD -p tcp --sport 40000",
            "-A FORWARD -p udp", "-A FORWARD -p udp --dport 53",
        ]), packets: [
            .init("eth0", fragment(wan, lan, proto: 6, offset: 0, more: true, payload: KernelDiffTests.be16(40000) + KernelDiffTests.be16(80) + [0, 0, 0, 1], id: 1)),
            .init("eth0", fragment(wan, lan, proto: 6, offset: 0, more: true, payload: KernelDiffTests.be16(40000) + KernelDiffTests.be16(80) + [0, 0, 0, 1] + Array(repeating: 0, count: 8), id: 2)),
            .init("eth0", fragment(wan, lan, proto: 6, offset: 0, more: true, payload: KernelDiffTests.be16(40000), id: 3)),
            .init("eth1", fragment(lan, wan, proto: 17, offset: 0, more: true, payload: KernelDiffTests.be16(5000) + KernelDiffTests.be16(53), id: 4)),
            .init("eth0", udp(wan, 1, lan, 53)),
        ]))

        // ICMP errors: matched by their own header only (ports of the quoted packet are not
        // ports of the error); forwarded and to the router.
        let quoted = PacketBuilder.udp(source: wan, destination: lan, sourcePort: 5353, destinationPort: 53, payload: Array(repeating: 1, count: 8))
        let quotedTCP = PacketBuilder.tcp(source: lan, destination: wan, sourcePort: 40000, destinationPort: 80, flags: .syn)
        cs.append(KernelCase("icmp-errors", rules: filter([
            "-A FORWARD -p icmp", "-A FORWARD -p udp --dport 53", "-A FORWARD -p udp", "-A FORWARD -s 192.168.1.50",
            "-A FORWARD -d 192.168.1.50", "-A FORWARD -p tcp", "-A INPUT -p icmp", "-A INPUT -p tcp",
        ]), packets: [
            .init("eth1", PacketBuilder.icmpError(source: lan, destination: wan, type: ICMPType.destinationUnreachable, code: 3, quoting: quoted)),
            .init("eth0", PacketBuilder.icmpError(source: IPv4Address(203, 0, 113, 254), destination: lan, type: ICMPType.timeExceeded, code: 0, quoting: quotedTCP)),
            .init("eth0", PacketBuilder.icmpError(source: wan, destination: lan, type: ICMPType.destinationUnreachable, code: 4, quoting: quotedTCP, quoteLength: 48)),
            .init("eth0", PacketBuilder.icmpError(source: wan, destination: rw, type: ICMPType.destinationUnreachable, code: 1,
                                                   quoting: PacketBuilder.tcp(source: rw, destination: wan, sourcePort: 22, destinationPort: 40000, flags: [.syn, .ack]))),
        ]))

        // IP options: NOP/EOL padding and Router Alert forward unchanged but for TTL and
        // checksum; Record Route gets the router's address written in by ip_forward_options;
        // Loose Source Route is refused by the kernel (accept_source_route=0) before INPUT/FORWARD.
        let nops: [UInt8] = [1, 1, 1, 0]
        let routerAlert: [UInt8] = [148, 4, 0, 0]
        let recordRoute: [UInt8] = [7, 7, 4, 0, 0, 0, 0, 0]
        let lsrr: [UInt8] = [1, 131, 7, 4, 192, 168, 1, 60]
        func withOptions(_ s: IPv4Address, _ d: IPv4Address, _ o: [UInt8], dp: UInt16) -> [UInt8] {
            let u = Array(KernelDiffTests.udp(s, 1, d, dp)[20...])
            return PacketBuilder.ipv4(source: s, destination: d, proto: 17, payload: u, options: o)
        }
        cs.append(KernelCase("ip-options", rules: filter([
            "-A FORWARD -p udp", "-A FORWARD -p udp --dport 1:3", "-A INPUT -p udp", "-A INPUT -p udp --dport 4",
        ]), packets: [
            .init("eth0", withOptions(wan, lan, nops, dp: 1)), .init("eth0", withOptions(wan, lan, routerAlert, dp: 2)),
            .init("eth0", withOptions(wan, rw, nops, dp: 4)),
        ]))
        cs.append(KernelCase("ip-option-record-route", rules: filter(["-A FORWARD -p udp --dport 5"]), packets: [
            .init("eth0", withOptions(wan, lan, recordRoute, dp: 5)),
        ]))
        cs.append(KernelCase("ip-option-lsrr", rules: filter(["-A FORWARD -p udp", "-A INPUT -p udp", "-A FORWARD -p tcp"]), packets: [
            .init("eth0", withOptions(wan, lan, lsrr, dp: 6)), .init("eth0", tcp(wan, 40000, lan, 80)),
        ]))

        // MARK: more tables and extensions

        let wan3 = IPv4Address(198, 51, 100, 20)
        let mss1460: [UInt8] = [2, 4, 0x05, 0xb4]

        // MARK in mangle PREROUTING, `-m mark` in every later chain (value, value/mask, negated).
        cs.append(KernelCase("mangle-mark-filter", rules: table("mangle", [
            "-A PREROUTING -p udp --dport 1000 -j MARK --set-mark 5", "-A PREROUTING -p udp --dport 1001 -j MARK --set-xmark 0x36/0xf0",
            "-A PREROUTING -p icmp -j MARK --set-mark 0x7", "-A PREROUTING -m mark --mark 5",
            "-A INPUT -m mark --mark 7", "-A INPUT -m mark ! --mark 7", "-A FORWARD -m mark --mark 5", "-A FORWARD -m mark --mark 0x30/0xf0",
            "-A POSTROUTING -m mark --mark 0", "-A POSTROUTING -m mark ! --mark 0",
        ]) + table("filter", [
            "-A INPUT -m mark --mark 0x7/0x7", "-A FORWARD -m mark --mark 5", "-A FORWARD -m mark --mark 0x30", "-A FORWARD -m mark ! --mark 0",
            "-A FORWARD -m mark --mark 0", "-A FORWARD -m mark --mark 0x5/0x4 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1000)), .init("eth0", udp(wan, 1, lan, 1001)), .init("eth0", udp(wan, 1, lan, 1002)),
            .init("eth1", pong(lan, rl)), .init("eth1", ping(lan, wan)), .init("eth0", tcp(wan, 1, lan, 1000, flags: .rst)),
        ]))

        // MARK --or-mark/--and-mark/--xor-mark on a set mark, checked in filter FORWARD.
        cs.append(KernelCase("mark-or-and-xor", rules: table("mangle", [
            "-A PREROUTING -p udp -j MARK --set-mark 0x11", "-A PREROUTING -p udp --dport 2001 -j MARK --or-mark 0x6",
            "-A PREROUTING -p udp --dport 2002 -j MARK --and-mark 0x3", "-A PREROUTING -p udp --dport 2003 -j MARK --xor-mark 0x13",
            "-A PREROUTING -p udp --dport 2004 -j MARK --set-xmark 0x1/0x10",
        ]) + table("filter", [
            "-A FORWARD -m mark --mark 0x11", "-A FORWARD -m mark --mark 0x17", "-A FORWARD -m mark --mark 0x1",
            "-A FORWARD -m mark --mark 0x2", "-A FORWARD -m mark --mark 0x1/0xff",
        ]), packets: (2000 ... 2004).map { .init("eth0", udp(wan, 1, lan, UInt16($0))) }))

        // TTL target in mangle PREROUTING (before ip_forward's decrement and its TTL check),
        // `-m ttl` in mangle FORWARD (after the decrement); forwarded bytes carry the TTL; a TTL
        // set to 1 makes the box send time exceeded, quoting the header as mangled.
        cs.append(KernelCase("ttl-target", rules: table("mangle", [
            "-A PREROUTING -p udp --dport 3001 -j TTL --ttl-set 5", "-A PREROUTING -p udp --dport 3002 -j TTL --ttl-dec 2",
            "-A PREROUTING -p udp --dport 3003 -j TTL --ttl-inc 1", "-A PREROUTING -p udp --dport 3004 -j TTL --ttl-set 1",
            "-A FORWARD -m ttl --ttl-eq 4", "-A FORWARD -m ttl --ttl-eq 61", "-A FORWARD -m ttl --ttl-eq 64", "-A FORWARD -m ttl --ttl-lt 2",
            "-A POSTROUTING -p icmp", "-A POSTROUTING -j TTL --ttl-dec 1",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 3001)), .init("eth0", udp(wan, 1, lan, 3002)), .init("eth0", udp(wan, 1, lan, 3003)),
            .init("eth0", udp(wan, 1, lan, 3004)), .init("eth1", udp(lan, 1, wan, 3002, ttl: 3)),
        ], compareOwnPackets: true))

        // DSCP rewrites (value, class) in PREROUTING and POSTROUTING; forwarded bytes carry the TOS.
        cs.append(KernelCase("dscp", rules: table("mangle", [
            "-A PREROUTING -p udp --dport 4001 -j DSCP --set-dscp 10", "-A PREROUTING -p udp --dport 4002 -j DSCP --set-dscp-class EF",
            "-A POSTROUTING -p udp --dport 4003 -j DSCP --set-dscp 0x3f", "-A POSTROUTING -p udp",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 4001)), .init("eth0", udp(wan, 1, lan, 4002)), .init("eth1", udp(lan, 1, wan, 4003)),
            .init("eth1", PacketBuilder.ipv4(source: lan, destination: wan, proto: 17, payload: Array(KernelDiffTests.udp(lan, 1, wan, 4001)[20...]), tos: 0xff)),
        ]))

        // `-m ttl`: PREROUTING sees the TTL as received, FORWARD after the decrement, INPUT as received.
        cs.append(KernelCase("ttl-match", rules: table("mangle", [
            "-A PREROUTING -m ttl --ttl-eq 64", "-A PREROUTING -m ttl --ttl-gt 10", "-A PREROUTING -m ttl --ttl-lt 5",
        ]) + table("filter", [
            "-A FORWARD -m ttl --ttl-eq 63", "-A FORWARD -m ttl --ttl-eq 64", "-A FORWARD -m ttl ! --ttl-eq 63", "-A FORWARD -m ttl --ttl-gt 10",
            "-A FORWARD -m ttl --ttl-lt 5", "-A FORWARD -m ttl --ttl-lt 1", "-A INPUT -m ttl --ttl-eq 64", "-A INPUT -m ttl --ttl-lt 2",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth0", udp(wan, 1, lan, 2, ttl: 5)), .init("eth0", udp(wan, 1, lan, 3, ttl: 11)),
            .init("eth0", udp(wan, 1, lan, 4, ttl: 2)), .init("eth1", pong(lan, rl)), .init("eth1", pong(lan, rl, ttl: 1)),
        ]))

        // `-m length`: IP total length, ranges, open ranges, negation.
        cs.append(KernelCase("length", rules: filter([
            "-A FORWARD -m length --length 0:60", "-A FORWARD -m length --length 100", "-A FORWARD -m length ! --length 40:1500",
            "-A FORWARD -m length --length 1000:1500", "-A FORWARD -p udp -m length --length 40 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth0", udp(wan, 1, lan, 2, payload: 72)), .init("eth0", udp(wan, 1, lan, 3, payload: 1472)),
            .init("eth1", udp(lan, 1, wan, 4, payload: 1200)), .init("eth1", ping(lan, wan)),
        ]))
        // An open-ended length range (iptables reads `1000:` as 1000:65535).
        cs.append(KernelCase("length-open-range", rules: filter([
            "-A FORWARD -m length --length 1000:", "-A FORWARD -m length --length :100",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth0", udp(wan, 1, lan, 3, payload: 1472)),
        ]))

        // `-m multiport`: lists with ranges, --sports, --ports (either), negation.
        cs.append(KernelCase("multiport", rules: filter([
            "-A FORWARD -p tcp -m multiport --dports 22,80:90,443", "-A FORWARD -p tcp -m multiport --sports 1000:2000,3000",
            "-A FORWARD -p tcp -m multiport --ports 53,8080", "-A FORWARD -p tcp -m multiport ! --dports 1:100",
            "-A FORWARD -p udp -m multiport --ports 5000:6000,7000", "-A FORWARD -p udp -m multiport ! --sports 5000,5001",
            "-A FORWARD -p udp -m multiport --dports 7000 -j DROP",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 22)), .init("eth0", tcp(wan, 1500, lan, 85)), .init("eth0", tcp(wan, 3000, lan, 443)),
            .init("eth0", tcp(wan, 53, lan, 1234)), .init("eth0", tcp(wan, 2001, lan, 8080)), .init("eth0", tcp(wan, 5, lan, 91)),
            .init("eth1", udp(lan, 5000, wan, 1)), .init("eth1", udp(lan, 1, wan, 7000)), .init("eth1", udp(lan, 6001, wan, 5999)),
        ]))

        // `-m iprange`: source, destination, both, negated.
        cs.append(KernelCase("iprange", rules: filter([
            "-A FORWARD -m iprange --src-range 198.51.100.1-198.51.100.10", "-A FORWARD -m iprange --dst-range 192.168.1.40-192.168.1.55",
            "-A FORWARD -m iprange ! --src-range 198.51.100.1-198.51.100.10", "-A FORWARD -m iprange --src-range 192.168.1.50-192.168.1.50 --dst-range 198.0.0.0-199.0.0.0",
            "-A FORWARD -m iprange ! --dst-range 192.168.1.0-192.168.1.55 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth0", udp(wan3, 1, lan, 1)), .init("eth0", udp(wan, 1, lan2, 1)),
            .init("eth1", udp(lan, 1, wan, 1)), .init("eth1", udp(lan2, 1, wan3, 1)),
        ]))

        // `-m addrtype`: destination LOCAL/BROADCAST/UNICAST/MULTICAST, `! --src-type LOCAL`,
        // `--limit-iface-in` (eth1's address arriving on eth0 is UNICAST for eth0).
        cs.append(KernelCase("addrtype", rules: filter([
            "-A INPUT -m addrtype --dst-type LOCAL", "-A INPUT -m addrtype --dst-type BROADCAST", "-A INPUT -m addrtype --dst-type MULTICAST",
            "-A INPUT -m addrtype --dst-type UNICAST", "-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in",
            "-A INPUT -m addrtype ! --src-type LOCAL", "-A INPUT -m addrtype --src-type UNICAST --dst-type LOCAL",
            "-A FORWARD -m addrtype --dst-type UNICAST", "-A FORWARD -m addrtype ! --src-type LOCAL", "-A FORWARD -m addrtype --dst-type LOCAL",
            "-A FORWARD -m addrtype --src-type UNICAST --limit-iface-out",
        ]), packets: [
            .init("eth0", pong(wan, rw)), .init("eth0", pong(wan, rl)), .init("eth1", pong(lan, rl)),
            .init("eth1", udp(lan, 1, IPv4Address(192, 168, 1, 255), 9)), .init("eth1", udp(lan, 68, IPv4Address(255, 255, 255, 255), 67)),
            .init("eth1", udp(lan, 1, IPv4Address(224, 0, 0, 1), 9)), .init("eth0", udp(wan, 1, lan, 9)), .init("eth1", udp(lan, 1, wan, 9)),
        ]))

        // `-m tcp`: --tcp-flags mask/comp (ALL, NONE, lists), --syn, ! --syn, --tcp-option 2 (MSS).
        cs.append(KernelCase("tcp-flags-options", rules: filter([
            "-A FORWARD -p tcp --tcp-flags SYN,ACK SYN", "-A FORWARD -p tcp --syn", "-A FORWARD -p tcp ! --syn",
            "-A FORWARD -p tcp --tcp-flags ALL NONE", "-A FORWARD -p tcp --tcp-flags FIN,RST RST", "-A FORWARD -p tcp --tcp-flags ALL FIN,PSH,URG",
            "-A FORWARD -p tcp -m tcp ! --tcp-flags ACK ACK", "-A FORWARD -p tcp --tcp-option 2", "-A FORWARD -p tcp ! --tcp-option 2",
            "-A FORWARD -p tcp --syn --tcp-option 2 -j DROP",
        ]), packets: [
            .init("eth0", tcp(wan, 40000, lan, 80)), .init("eth0", tcpOptions(wan, 40001, lan, 80, options: mss1460)),
            .init("eth1", tcp(lan, 80, wan, 40000, flags: [.syn, .ack])), .init("eth1", tcpOptions(lan, 80, wan, 40001, flags: [.syn, .ack], options: mss1460)),
            .init("eth0", tcp(wan, 40000, lan, 80, flags: .ack)), .init("eth0", tcp(wan, 40000, lan, 80, flags: [])),
            .init("eth0", tcp(wan, 40000, lan, 80, flags: .rst)), .init("eth0", tcp(wan, 40000, lan, 80, flags: [.fin, .psh, .urg])),
            .init("eth0", tcpOptions(wan, 40002, lan, 80, flags: .ack, options: [1, 1, 1, 0])),
        ]))

        // `-m icmp --icmp-type`: by name, number, type/code, `any`, negated.
        let q = PacketBuilder.udp(source: lan, destination: wan, sourcePort: 1, destinationPort: 2, payload: Array(repeating: 1, count: 8))
        cs.append(KernelCase("icmp-types", rules: filter([
            "-A FORWARD -p icmp --icmp-type echo-request", "-A FORWARD -p icmp --icmp-type 8", "-A FORWARD -p icmp --icmp-type 3/1",
            "-A FORWARD -p icmp --icmp-type destination-unreachable", "-A FORWARD -p icmp --icmp-type any", "-A FORWARD -p icmp ! --icmp-type echo-request",
            "-A FORWARD -p icmp --icmp-type host-unreachable", "-A FORWARD -p icmp --icmp-type 0", "-A FORWARD -p icmp --icmp-type port-unreachable",
            "-A FORWARD -p icmp --icmp-type 11/0", "-A FORWARD -p icmp -m icmp --icmp-type echo-reply -j DROP",
        ]), packets: [
            .init("eth0", ping(wan, lan)), .init("eth1", PacketBuilder.icmpEcho(source: lan, destination: wan, request: false, identifier: 7, sequence: 1)),
            .init("eth1", PacketBuilder.icmpError(source: lan, destination: wan, type: 3, code: 1, quoting: q)),
            .init("eth1", PacketBuilder.icmpError(source: lan, destination: wan, type: 3, code: 3, quoting: q)),
            .init("eth1", PacketBuilder.icmpError(source: lan, destination: wan, type: 11, code: 0, quoting: q)),
        ]))

        // `-m pkttype` from the frame's destination MAC; a broadcast frame carrying a unicast IP
        // packet for another host is not forwarded (ip_forward: pkt_type != PACKET_HOST).
        let bcast: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        let allHostsMAC: [UInt8] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]
        cs.append(KernelCase("pkttype", rules: table("mangle", [
            "-A PREROUTING -m pkttype --pkt-type broadcast", "-A PREROUTING -m pkttype --pkt-type unicast",
            "-A PREROUTING -m pkttype --pkt-type multicast", "-A PREROUTING -m pkttype ! --pkt-type unicast",
        ]) + table("filter", [
            "-A INPUT -m pkttype --pkt-type broadcast", "-A INPUT -m pkttype --pkt-type unicast", "-A INPUT -m pkttype --pkt-type multicast",
            "-A FORWARD -m pkttype --pkt-type unicast", "-A FORWARD -m pkttype ! --pkt-type unicast",
        ]), packets: [
            .init("eth1", udp(lan, 1, IPv4Address(192, 168, 1, 255), 9), destinationMAC: bcast),
            .init("eth1", udp(lan, 68, IPv4Address(255, 255, 255, 255), 67), destinationMAC: bcast),
            .init("eth1", udp(lan, 1, IPv4Address(224, 0, 0, 1), 9), destinationMAC: allHostsMAC),
            .init("eth1", pong(lan, rl)), .init("eth0", udp(wan, 1, lan, 9)),
        ]))
        cs.append(KernelCase("pkttype-broadcast-frame-unicast-ip", rules: table("mangle", [
            "-A PREROUTING -m pkttype --pkt-type broadcast", "-A PREROUTING -m pkttype --pkt-type unicast",
        ]) + table("filter", [
            "-A INPUT -m pkttype --pkt-type broadcast", "-A FORWARD -m pkttype --pkt-type broadcast", "-A FORWARD",
        ]), packets: [
            .init("eth1", pong(lan, rl), destinationMAC: bcast), .init("eth0", udp(wan, 1, lan, 9), destinationMAC: bcast),
            .init("eth0", udp(wan, 1, lan, 10)),
        ]))

        // `-m mac --mac-source`: the peers' MACs, negated.
        cs.append(KernelCase("mac-source", rules: filter([
            "-A FORWARD -m mac --mac-source 02:00:00:00:00:fe", "-A FORWARD -m mac --mac-source 02:00:00:00:01:FE",
            "-A FORWARD -m mac ! --mac-source 02:00:00:00:00:fe", "-A INPUT -m mac --mac-source 02:00:00:00:01:fe",
            "-A FORWARD -m mac --mac-source 02:00:00:00:00:01 -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth1", udp(lan, 1, wan, 1)), .init("eth1", pong(lan, rl)),
        ]))

        // `-m statistic --mode nth`: every 3rd packet from the 1st, from the 2nd (per-rule counters).
        cs.append(KernelCase("statistic-nth", rules: filter([
            "-A FORWARD -m statistic --mode nth --every 3 --packet 0", "-A FORWARD -m statistic --mode nth --every 3 --packet 1",
            "-A FORWARD -p udp -m statistic --mode nth --every 2 --packet 1 -j DROP", "-A FORWARD -p udp",
        ]), packets: (1 ... 8).map { .init("eth0", udp(wan, 1, lan, UInt16($0))) }))

        // `-m set --match-set`: hash:ip and hash:net, src and dst, negated; the kernel's
        // `ipset save` is Sluice's sets file.
        cs.append(KernelCase("ipset", rules: filter([
            "-A FORWARD -m set --match-set kd_lanhosts dst", "-A FORWARD -m set --match-set kd_wannets src",
            "-A FORWARD -m set ! --match-set kd_lanhosts dst", "-A FORWARD -m set --match-set kd_lanhosts src",
            "-A FORWARD -m set --match-set kd_wannets src -m set --match-set kd_lanhosts dst -j DROP",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth0", udp(wan3, 1, lan, 1)), .init("eth0", udp(wan, 1, lan2, 1)),
            .init("eth1", udp(lan, 1, wan, 1)), .init("eth1", udp(lan2, 1, wan, 1)),
        ], ipsets: "create kd_lanhosts hash:ip family inet\nadd kd_lanhosts 192.168.1.50\ncreate kd_wannets hash:net family inet\nadd kd_wannets 198.51.100.0/28\n"))

        // `-f` / `! -f`: later fragments only.
        let first = KernelDiffTests.be16(5000) + KernelDiffTests.be16(53) + KernelDiffTests.be16(40) + KernelDiffTests.be16(0) + Array(repeating: 0x11, count: 8)
        cs.append(KernelCase("fragment-flag", rules: filter([
            "-A FORWARD -f", "-A FORWARD ! -f", "-A FORWARD -p udp -f", "-A FORWARD -p tcp ! -f", "-A FORWARD -f -j DROP",
        ]), packets: [
            .init("eth0", KernelDiffTests.fragment(wan, lan, proto: 17, offset: 0, more: true, payload: first)),
            .init("eth0", KernelDiffTests.fragment(wan, lan, proto: 17, offset: 16, more: false, payload: Array(repeating: 0x22, count: 8))),
            .init("eth0", tcp(wan, 40000, lan, 80)),
        ]))

        // REJECT of forwarded packets: ICMP errors (default port unreachable, host/admin
        // prohibited, net unreachable) and a TCP reset, in both directions.
        cs.append(KernelCase("reject-forwarded", rules: table("mangle", ["-A POSTROUTING -p icmp", "-A POSTROUTING -p tcp"]) + table("filter", [
            "-A FORWARD -p udp --dport 5001 -j REJECT", "-A FORWARD -p udp --dport 5002 -j REJECT --reject-with icmp-host-prohibited",
            "-A FORWARD -p udp --dport 5003 -j REJECT --reject-with icmp-admin-prohibited",
            "-A FORWARD -p udp --dport 5004 -j REJECT --reject-with icmp-net-unreachable",
            "-A FORWARD -p tcp --dport 5005 -j REJECT --reject-with tcp-reset",
            "-A FORWARD -p icmp -j REJECT --reject-with icmp-port-unreachable",
        ]), packets: [
            .init("eth0", udp(wan, 40000, lan, 5001)), .init("eth0", udp(wan, 40000, lan, 5002)), .init("eth1", udp(lan, 40000, wan, 5003)),
            .init("eth1", udp(lan, 40000, wan, 5004)), .init("eth0", tcp(wan, 40000, lan, 5005)),
            .init("eth1", tcp(lan, 40001, wan, 5005, flags: [.ack, .psh])), .init("eth1", ping(lan, wan)), .init("eth0", udp(wan, 40000, lan, 5006)),
        ], compareOwnPackets: true))

        // REJECT of packets for the box (either address, from either side).
        cs.append(KernelCase("reject-local", rules: filter([
            "-A INPUT -p udp --dport 5001 -j REJECT", "-A INPUT -p udp --dport 5002 -j REJECT --reject-with icmp-host-prohibited",
            "-A INPUT -p udp --dport 5003 -j REJECT --reject-with icmp-admin-prohibited",
            "-A INPUT -p tcp -j REJECT --reject-with tcp-reset",
        ]), packets: [
            .init("eth0", udp(wan, 40000, rw, 5001)), .init("eth1", udp(lan, 40000, rl, 5002)), .init("eth0", udp(wan, 40000, rl, 5003)),
            .init("eth0", tcp(wan, 40000, rw, 22)), .init("eth1", tcp(lan, 40000, rw, 23, flags: .ack)), .init("eth1", tcp(lan, 40000, rl, 24, flags: [.fin, .ack])),
        ], compareOwnPackets: true))

        // TCPMSS --set-mss on forwarded SYNs with an MSS option: lowered to 1200, never raised.
        cs.append(KernelCase("tcpmss-set", rules: table("mangle", [
            "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200", "-A POSTROUTING -p tcp --tcp-option 2",
        ]), packets: [
            .init("eth0", tcpOptions(wan, 40000, lan, 80, options: mss1460)), .init("eth1", tcpOptions(lan, 80, wan, 40000, flags: [.syn, .ack], options: mss1460)),
            .init("eth0", tcpOptions(wan, 40001, lan, 80, options: [2, 4, 0x03, 0xe8])), .init("eth0", tcpOptions(wan, 40002, lan, 80, flags: .ack, options: mss1460)),
        ]))
        // TCPMSS on a SYN without an MSS option.
        cs.append(KernelCase("tcpmss-no-option", rules: table("mangle", [
            "-A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200", "-A POSTROUTING -p tcp --tcp-option 2",
        ]), packets: [
            .init("eth0", tcp(wan, 40003, lan, 80)),
        ]))

        // raw table: PREROUTING counters, CT --notrack, NOTRACK, a DROP before routing.
        cs.append(KernelCase("raw-table", rules: table("raw", [
            "-A PREROUTING -p udp", "-A PREROUTING -s 198.51.100.0/24", "-A PREROUTING -p udp --dport 6001 -j CT --notrack",
            "-A PREROUTING -p udp --dport 6002 -j NOTRACK", "-A PREROUTING -p tcp --dport 6003 -j DROP", "-A PREROUTING -i eth1",
        ]) + table("filter", ["-A FORWARD -p udp", "-A FORWARD -p tcp", "-A INPUT"]), packets: [
            .init("eth0", udp(wan, 1, lan, 6001)), .init("eth0", udp(wan, 1, lan, 6002)), .init("eth0", tcp(wan, 1, lan, 6003)),
            .init("eth0", tcp(wan, 1, lan, 6004)), .init("eth1", udp(lan, 1, wan, 6005)), .init("eth1", pong(lan, rl)),
        ]))

        // security table: runs after filter on INPUT and FORWARD; its DROP and user chains.
        cs.append(KernelCase("security-table", rules: table("security", chains: ["SEC"], [
            "-A INPUT -p icmp", "-A FORWARD -p udp --dport 7001 -j DROP", "-A FORWARD -j SEC", "-A SEC -p tcp", "-A SEC -i eth1 -j RETURN", "-A SEC -p udp",
        ]) + table("filter", ["-A FORWARD -p udp --dport 7002 -j DROP", "-A FORWARD -p udp", "-A INPUT -p icmp"]), packets: [
            .init("eth0", udp(wan, 1, lan, 7001)), .init("eth0", udp(wan, 1, lan, 7002)), .init("eth0", udp(wan, 1, lan, 7003)),
            .init("eth0", tcp(wan, 1, lan, 7004)), .init("eth1", udp(lan, 1, wan, 7005)), .init("eth1", pong(lan, rl)),
        ]))

        // Policy routing by mark: a mark set in mangle PREROUTING sends 10.9.0.0/24 by eth1
        // (`ip rule add fwmark 0x64 lookup 100`) instead of the main table's default by eth0.
        let far = IPv4Address(10, 9, 0, 5)
        cs.append(KernelCase("policy-routing-mark", rules: table("mangle", [
            "-A PREROUTING -d 10.9.0.0/24 -p udp --dport 7000 -j MARK --set-mark 0x64", "-A FORWARD -o eth1", "-A FORWARD -o eth0",
            "-A POSTROUTING -m mark --mark 0x64",
        ]) + table("filter", ["-A FORWARD -o eth1", "-A FORWARD -o eth0", "-A FORWARD -m mark --mark 0x64 -o eth1"]), packets: [
            .init("eth0", udp(wan, 1, far, 7000)), .init("eth0", udp(wan, 1, far, 7001)), .init("eth0", tcp(wan, 1, far, 7000)),
        ]))

        // Every mangle chain with a user chain (jump, RETURN); local packets that need no answer.
        cs.append(KernelCase("mangle-chains", rules: table("mangle", chains: ["M"], [
            "-A PREROUTING -j M", "-A INPUT -p icmp", "-A FORWARD -p udp", "-A POSTROUTING -o eth1", "-A POSTROUTING -o eth0",
            "-A M -i eth0 -j RETURN", "-A M -p icmp", "-A M -p udp -j ACCEPT", "-A M -p udp",
        ]), packets: [
            .init("eth0", udp(wan, 1, lan, 1)), .init("eth1", udp(lan, 1, wan, 1)), .init("eth1", pong(lan, rl)),
            .init("eth0", pong(wan, rw)), .init("eth1", tcp(lan, 1, wan, 2)),
        ]))

        // Left out: `-m limit` and `-m recent`. The kernel counts time in jiffies from when
        // tcpreplay's packets arrive; Sluice uses the capture timestamps, which the harness sets
        // 1 ms apart but tcpreplay -t does not reproduce. Not deterministic on the kernel side.
        return cs
    }()
}

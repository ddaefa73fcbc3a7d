import Capture
import Foundation
import Replay
import Wire

/// The NAT scenarios of issue 4, shared by the golden tests (NATGoldenTests) and the kernel
/// comparison (NATKernelDifferentialTests). Captures come from capgen (`captures/nat-*`, and the
/// demo's outbound-nat/udp/ping files for MASQUERADE); rules and network models from
/// `examples/nat/`.
struct NATScenario {
    /// The golden directory is `Tests/ReplayTests/Golden/nat-<name>`.
    var name: String
    var rules: String
    var network: String
    /// `--in` pairs, in this order (ties in time go to the earlier one).
    var inputs: [(iface: String, capture: String)]
    var packets: Int
    /// Router interfaces (veths in the kernel run); every one has a MAC below.
    var interfaces: [String]
    /// NAT addresses whose source-port choice may legitimately differ from the kernel's
    /// (after a clash the kernel starts from a random offset): the port must be in `range` on
    /// both sides and free. `remote` restricts an entry to connections to that address.
    var portChoice: [(address: IPv4Address, remote: IPv4Address?, range: ClosedRange<UInt16>)] = []

    static let routerMAC: [String: [UInt8]] = ["eth0": [2, 0, 0, 0, 0, 1], "eth1": [2, 0, 0, 0, 1, 1], "eth2": [2, 0, 0, 0, 2, 1]]

    static let masquerade = NATScenario(
        name: "masquerade", rules: "examples/nat/masquerade.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/outbound-nat-eth0.pcap"), ("eth0", "captures/udp-eth0.pcap"), ("eth0", "captures/ping-eth0.pcap"),
                 ("eth1", "captures/outbound-nat-eth1.pcap"), ("eth1", "captures/udp-eth1.pcap"), ("eth1", "captures/ping-eth1.pcap")],
        packets: 19, interfaces: ["eth0", "eth1"])
    static let snatClash = NATScenario(
        name: "snat-clash", rules: "examples/nat/snat-clash.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/nat-snat-clash-eth0.pcap"), ("eth1", "captures/nat-snat-clash-eth1.pcap")],
        packets: 40, interfaces: ["eth0", "eth1"],
        portChoice: [(IPv4Address(203, 0, 113, 1), IPv4Address(198, 51, 100, 80), 1024 ... 1030),
                     (IPv4Address(203, 0, 113, 1), nil, 1024 ... 65535)])
    static let netmap = NATScenario(
        name: "netmap", rules: "examples/nat/netmap.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/nat-netmap-eth0.pcap"), ("eth1", "captures/nat-netmap-eth1.pcap")],
        packets: 22, interfaces: ["eth0", "eth1"])
    static let hairpin = NATScenario(
        name: "hairpin", rules: "examples/nat/hairpin.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/nat-hairpin-eth0.pcap"), ("eth1", "captures/nat-hairpin-eth1.pcap")],
        packets: 20, interfaces: ["eth0", "eth1"])
    static let icmpErrors = NATScenario(
        name: "icmp-errors", rules: "examples/nat/icmp-errors.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/nat-icmp-errors-eth0.pcap"), ("eth1", "captures/nat-icmp-errors-eth1.pcap")],
        packets: 9, interfaces: ["eth0", "eth1"])
    static let connmark = NATScenario(
        name: "connmark", rules: "examples/nat/connmark.rules", network: "examples/nat/connmark.network",
        inputs: [("eth0", "captures/nat-connmark-eth0.pcap"), ("eth1", "captures/nat-connmark-eth1.pcap"), ("eth2", "captures/nat-connmark-eth2.pcap")],
        packets: 40, interfaces: ["eth0", "eth1", "eth2"])
    static let stateful = NATScenario(
        name: "stateful", rules: "examples/nat/stateful.rules", network: "examples/nat/edge.network",
        inputs: [("eth0", "captures/nat-stateful-eth0.pcap"), ("eth1", "captures/nat-stateful-eth1.pcap")],
        packets: 21, interfaces: ["eth0", "eth1"])

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func repo(_ p: String) -> String { repoRoot.appendingPathComponent(p).path }

    func options(outDir: String) -> ReplayOptions {
        ReplayOptions(rulesPath: Self.repo(rules), networkPath: Self.repo(network),
                      inputs: inputs.map { ReplayInput(interface: $0.iface, path: Self.repo($0.capture)) }, outDir: outDir)
    }

    /// The input frames in Sluice's merge order (by time; ties to the earlier `--in`).
    func mergedInputs() throws -> [(iface: String, frame: [UInt8])] {
        var all: [(ts: Int64, input: Int, record: Int, iface: String, frame: [UInt8])] = []
        for (n, input) in inputs.enumerated() {
            let f = try CaptureFile.open(path: Self.repo(input.capture))
            for i in f.records.indices { all.append((f.records[i].timestampNanos, n, i, input.iface, f.withFrame(i) { Array($0) })) }
        }
        all.sort { ($0.ts, $0.input, $0.record) < ($1.ts, $1.input, $1.record) }
        return all.map { ($0.iface, $0.frame) }
    }

    /// The router's addresses, from the network model's `ip addr add` lines.
    func routerAddresses() throws -> Set<UInt32> {
        var out: Set<UInt32> = []
        for line in try String(contentsOfFile: Self.repo(network), encoding: .utf8).split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.count >= 4, w[0] == "ip", w[1] == "addr", w[2] == "add", let a = IPv4Address(String(w[3].split(separator: "/")[0])) { out.insert(a.value) }
        }
        return out
    }
}

/// One replay's outputs, per input packet: its verdict line and the packets it made leave
/// (interface, IPv4 bytes), taken from the interface pcaps in the order `out` lists them.
struct ReplayRun {
    var verdicts: [[String: Any]]
    var outputs: [[(iface: String, ip: [UInt8])]]
    var conntrack: [String]

    init(outDir: String, interfaces: [String]) throws {
        let lines = try String(contentsOfFile: outDir + "/verdicts.jsonl", encoding: .utf8).split(separator: "\n")
        verdicts = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        var queues: [String: [[UInt8]]] = [:]
        for iface in interfaces {
            let path = outDir + "/\(iface).pcap"
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let f = try CaptureFile.open(path: path)
            queues[iface] = f.records.indices.compactMap { i in f.withFrame(i) { IPPacket.ipv4(ofEthernet: Array($0)) } }
        }
        var next: [String: Int] = [:]
        outputs = verdicts.map { v in
            (v["out"] as? [String] ?? []).map { iface in
                let k = next[iface, default: 0]
                next[iface] = k + 1
                let q = queues[iface] ?? []
                return (iface, k < q.count ? q[k] : [])
            }
        }
        for (iface, q) in queues where next[iface, default: 0] != q.count {
            throw NSError(domain: "ReplayRun", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(iface).pcap holds \(q.count) packets, verdicts name \(next[iface, default: 0])"])
        }
        conntrack = try String(contentsOfFile: outDir + "/conntrack.txt", encoding: .utf8).split(separator: "\n").map(String.init)
    }
}

/// A plain reading of an IPv4 packet's headers, for test assertions (independent of Wire's
/// parser, so the tests do not check the engine with its own code).
struct IPPacket: Equatable, CustomStringConvertible {
    var bytes: [UInt8]
    init(_ b: [UInt8]) { bytes = b }

    static func ipv4(ofEthernet f: [UInt8]) -> [UInt8]? {
        guard f.count >= 34, f[12] == 0x08, f[13] == 0x00, f[14] >> 4 == 4 else { return nil }
        let total = Int(f[16]) << 8 | Int(f[17])
        return Array(f[14 ..< min(f.count, 14 + total)])
    }

    func be16(_ i: Int) -> UInt16 { UInt16(bytes[i]) << 8 | UInt16(bytes[i + 1]) }
    func be32(_ i: Int) -> UInt32 { UInt32(be16(i)) << 16 | UInt32(be16(i + 2)) }
    var hl: Int { Int(bytes[0] & 0x0F) * 4 }
    var ttl: UInt8 { bytes[8] }
    var proto: UInt8 { bytes[9] }
    var src: IPv4Address { IPv4Address(be32(12)) }
    var dst: IPv4Address { IPv4Address(be32(16)) }
    var hasPorts: Bool { proto == 6 || proto == 17 }
    var sport: UInt16 { be16(hl) }
    var dport: UInt16 { be16(hl + 2) }
    var icmpType: UInt8 { bytes[hl] }
    var icmpCode: UInt8 { bytes[hl + 1] }
    var tcpFlags: UInt8 { bytes[hl + 13] }
    /// Offset of the L4 checksum field.
    var l4ChecksumOffset: Int { proto == 6 ? hl + 16 : proto == 17 ? hl + 6 : hl + 2 }
    /// The quoted datagram of an ICMP error.
    var inner: IPPacket? {
        guard proto == 1, [3, 4, 5, 11, 12].contains(icmpType), bytes.count >= hl + 8 + 20 else { return nil }
        return IPPacket(Array(bytes[(hl + 8)...]))
    }
    var description: String {
        var s = "\(src)"
        if hasPorts { s += ":\(sport)" }
        s += " > \(dst)"
        if hasPorts { s += ":\(dport)" }
        return s + " proto \(proto) ttl \(ttl) len \(bytes.count)"
    }

    static func fold(_ s: UInt32) -> UInt16 {
        var s = s
        while s > 0xFFFF { s = (s & 0xFFFF) + (s >> 16) }
        return UInt16(s)
    }
    static func sum(_ b: ArraySlice<UInt8>) -> UInt32 {
        var s: UInt32 = 0
        var i = b.startIndex
        while i + 1 < b.endIndex { s += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.endIndex { s += UInt32(b[i]) << 8 }
        return s
    }
    var ipChecksumOK: Bool { Self.fold(Self.sum(bytes[0 ..< hl])) == 0xFFFF }
    /// The full L4 checksum (pseudo-header for TCP/UDP) verifies; a UDP checksum of 0 means none.
    var l4ChecksumOK: Bool {
        let seg = bytes[hl...]
        switch proto {
        case 6, 17:
            if proto == 17 && be16(hl + 6) == 0 { return true }
            let ph = (be32(12) >> 16) + (be32(12) & 0xFFFF) + (be32(16) >> 16) + (be32(16) & 0xFFFF) + UInt32(proto) + UInt32(seg.count)
            return Self.fold(Self.sum(seg) + ph) == 0xFFFF
        case 1: return Self.fold(Self.sum(seg)) == 0xFFFF
        default: return true
        }
    }
    /// With the L4 checksum recomputed in full (for test-side rewrites).
    func withL4ChecksumFixed() -> IPPacket {
        var p = self
        let off = l4ChecksumOffset
        p.bytes[off] = 0; p.bytes[off + 1] = 0
        let seg = p.bytes[hl...]
        var c: UInt16
        if proto == 1 {
            c = ~Self.fold(Self.sum(seg))
        } else {
            let ph = (be32(12) >> 16) + (be32(12) & 0xFFFF) + (be32(16) >> 16) + (be32(16) & 0xFFFF) + UInt32(proto) + UInt32(seg.count)
            c = ~Self.fold(Self.sum(seg) + ph)
            if proto == 17 && c == 0 { c = 0xFFFF }
        }
        p.bytes[off] = UInt8(c >> 8); p.bytes[off + 1] = UInt8(c & 0xFF)
        return p
    }
    mutating func setBE16(_ i: Int, _ v: UInt16) { bytes[i] = UInt8(v >> 8); bytes[i + 1] = UInt8(v & 0xFF) }
}

func hexString(_ b: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    var s = ""
    for x in b { s.append(digits[Int(x >> 4)]); s.append(digits[Int(x & 15)]) }
    return s
}

import Capture
import Engine
import Replay
import Wire
import XCTest

/// The third-party captures in ../shared/captures (see its MANIFEST.md): every packet parses
/// without a trap, per-protocol counts agree with tshark, malformed packets carry named
/// reasons, and a full replay writes one verdict per packet.
final class SharedCorpusTests: XCTestCase {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = repoRoot.appendingPathComponent("../shared/captures").standardized

    func corpusFiles() -> [String]? {
        guard let e = FileManager.default.enumerator(atPath: Self.shared.path) else {
            print("SKIPPED: \(Self.shared.path) not found; shared capture checks did not run")
            return nil
        }
        return e.compactMap { $0 as? String }.filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted()
    }

    /// Per file: first IPv4 protocol number (or "v6" for IPv6, "-" for neither or an IPv4 header
    /// too broken to read) -> packets, from
    /// `tshark -o ip.defragment:FALSE -r F -T fields -e ip.proto -e ipv6.nxt` (first value).
    static let tsharkProtocols: [String: [String: Int]] = [
        "bulk/1kxun.pcap": ["6": 1381, "v6": 64, "17": 278],
        "bulk/echo-connections.pcap": ["6": 82582],
        "bulk/emix.pcap": ["6": 5571, "2": 39, "1": 27, "v6": 152, "17": 1257, "-": 87],
        "bulk/gnutella.pcap": ["6": 2149, "2": 12, "1": 8, "v6": 68, "17": 1645, "-": 23],
        "formats/cooper-grill-dvwa.pcapng": ["6": 48, "-": 16],
        "formats/get-to-ssh-server.pcap": ["6": 9],
        "formats/nfsv3.pcap": ["17": 128],
        "formats/pcapng-multi-interface.pcapng": ["17": 6],
        "formats/pcapng-test-generator-be-test001.pcapng": ["17": 4],
        "formats/pcapng-test-generator-be-test006.pcapng": ["17": 5],
        "formats/pcapng-test-generator-le-test202.pcapng": ["17": 8, "-": 3],
        "formats/pptp.pcap": ["6": 22, "47": 1],
        "formats/tcp-handshake-nano.pcap": ["6": 3],
        "fragments/afs.pcap": ["1": 25, "17": 576],
        "fragments/defrag-af-confusion-spray-h8.pcap": ["v6": 8192, "44": 8192],
        "fragments/frag-eth-vlan-ip-tcp-syn.pcap": ["6": 3],
        "fragments/fragmented-3.pcap": ["6": 5],
        "fragments/fragmented-4.pcap": ["6": 6],
        "fragments/fragmented-syn.pcap": ["6": 2],
        "fragments/ipv4frags.pcap": ["1": 3],
        "icmp/5-pings.pcap": ["1": 10],
        "icmp/icmp-destunreach-ip.pcap": ["1": 1],
        "icmp/icmp-destunreach-udp.pcap": ["1": 1],
        "icmp/icmp-timeexceeded.pcap": ["1": 1],
        "icmp/nintendo.pcap": ["6": 97, "1": 30, "17": 869, "-": 4],
        "icmp/smtp.pcap": ["6": 118, "1": 4, "17": 3],
        "ipopts/IGMP_V2.pcap": ["2": 18],
        "ipopts/ip_secopt.pcap": ["17": 3],
        "ipopts/suricata-detect-ipopts.pcap": ["6": 8],
        "ipv6/LINKTYPE_RAW_ipv6.pcap": ["v6": 1],
        "ipv6/icmp6-ping.pcap": ["v6": 8],
        "ipv6/ipv6-fragmented-dns.pcap": ["v6": 8],
        "ipv6/ipv6-http-atomic-frag.pcap": ["v6": 38],
        "ipv6/zeek-communityid-ipv6.pcap": ["v6": 17],
        "linktypes/802.1ad_QinQ.pcap": ["-": 2],
        "linktypes/flow-test-01.pcap": ["6": 7],
        "linktypes/http-vlan-0.pcap": ["6": 14],
        "linktypes/irc-starttls.pcap": ["6": 20],
        "linktypes/linux_dlt_sll2.pcap": ["1": 2, "v6": 2, "-": 2],
        "linktypes/suricata-bug-5758.pcap": ["6": 41],
        "linktypes/suricata-decode-sll2-02.pcap": ["6": 159],
        "linktypes/vlan-pcp-dei.pcapng": ["6": 9],
        "linktypes/vlan-qinqinq.pcap": ["6": 14],
        "malformed/icmp-header-trunc.pcap": ["1": 2],
        "malformed/ip4-bad-chksum.pcap": ["17": 1],
        "malformed/ip4-tcp-bad-chksum.pcap": ["6": 1],
        "malformed/ip_fragmented_garbage.pcap": ["6": 1252],
        "malformed/ipv4-truncated-broken-header.pcap": ["-": 1],
        "malformed/ipv4_invalid_hdr_length.pcap": ["-": 1],
        "malformed/ipv4_invalid_total_length.pcap": ["17": 1],
        "malformed/localhost-bad-chksum.pcap": ["6": 10],
        "malformed/suricata-ipv4-truncated.pcap": ["17": 1],
        "malformed/suricata-tcp-session-decode-malformed-ipv4.pcap": ["6": 11],
        "malformed/timestamp_invalid_micro.pcap": ["6": 3],
        "malformed/trunc-hdr.pcap": ["-": 1],
        "malformed/truncated-header.pcap": ["6": 24],
        "malformed/zeek-communityid-tcp.pcap": ["6": 12],
        "tcp/ecdhe.pcap": ["6": 28],
        "tcp/hrr.pcap": ["6": 19],
        "tcp/ssh.pcap": ["6": 54],
        "tcp/zeek-http-get.pcap": ["6": 14],
        "udp/chromium-115.0.5790.110-api-cirrus-com.pcap": ["17": 19],
        "udp/dns_udp.pcap": ["17": 2],
        "udp/ntp.pcap": ["17": 8],
    ]

    /// Where Sluice's reading differs from tshark's dissection, and why (file -> key -> our
    /// count, 0 = absent).
    static let differences: [String: [String: Int]] = [
        // tshark lists the file's 3 pcapng custom blocks as frames; they are not packets.
        "formats/pcapng-test-generator-le-test202.pcapng": ["-": 0],
        // Total length 85 with 84 bytes on the wire (caplen == len): the kernel's ip_rcv drops
        // it before any hook, and Sluice refuses it (ip-total-length-beyond-capture); tshark
        // still dissects the header.
        "malformed/ipv4_invalid_total_length.pcap": ["17": 0, "-": 1],
        // Same: IPv4 total length beyond the frame (and a UDP length of 65008).
        "malformed/suricata-ipv4-truncated.pcap": ["17": 0, "-": 1],
    ]

    /// Parse outcome -> packets, for files with anything other than "ok" (parsed: IPv4, or
    /// recognised and passed through); every other file must be all "ok".
    static let expectedOutcomes: [String: [String: Int]] = [
        // One frame of 8 bytes (caplen) in the middle of the capture.
        "bulk/gnutella.pcap": ["ok": 3904, "truncated-link-header": 1],
        // Quotes only the IPv4 header, not the 8 bytes of L4 header RFC 792 requires.
        "icmp/icmp-destunreach-ip.pcap": ["icmp-error-short-quote": 1],
        // Second option (type 0xf1) claims 53 bytes in a 12-byte options area: ip_options_compile refuses it.
        "ipopts/ip_secopt.pcap": ["ok": 2, "bad-ip-options": 1],
        "malformed/ipv4-truncated-broken-header.pcap": ["bad-ip-total-length": 1],
        "malformed/ipv4_invalid_hdr_length.pcap": ["bad-ihl": 1],
        "malformed/ipv4_invalid_total_length.pcap": ["ip-total-length-beyond-capture": 1],
        "malformed/suricata-ipv4-truncated.pcap": ["ip-total-length-beyond-capture": 1],
        "malformed/trunc-hdr.pcap": ["truncated-link-header": 1],
    ]

    struct Counts { var protocols: [String: Int] = [:]; var outcomes: [String: Int] = [:] }

    func count(_ path: String) throws -> Counts {
        let f = try CaptureFile.open(path: path)
        var c = Counts()
        var p = ParsedPacket()
        f.withUnsafeBytes { base in
            for r in f.records {
                let frame = UnsafeRawBufferPointer(rebasing: base[r.offset ..< r.offset + r.capturedLength])
                guard let lt = f.interfaces[r.interface].linkType else { c.outcomes["unsupported-link-type", default: 0] += 1; continue }
                let ok = PacketParser.parse(frame, linkType: lt, wireLength: r.originalLength, into: &p)
                c.outcomes[ok ? "ok" : p.drop!.name, default: 0] += 1
                let key: String
                if p.kind == .ipv4 && p.ipHeaderLength > 0 { key = String(p.proto) } else if p.kind == .ipv6 { key = "v6" } else { key = "-" }
                c.protocols[key, default: 0] += 1
            }
        }
        return c
    }

    func testProtocolCountsMatchTshark() throws {
        guard let files = corpusFiles() else { return }
        XCTAssertEqual(Set(files), Set(Self.tsharkProtocols.keys))
        for name in files {
            let c = try count(Self.shared.appendingPathComponent(name).path)
            var expected = Self.tsharkProtocols[name] ?? [:]
            for (k, v) in Self.differences[name] ?? [:] { expected[k] = v == 0 ? nil : v }
            XCTAssertEqual(c.protocols, expected, name)
        }
    }

    func testEveryPacketHasAnOutcome() throws {
        guard let files = corpusFiles() else { return }
        for name in files {
            let c = try count(Self.shared.appendingPathComponent(name).path)
            let total = c.outcomes.values.reduce(0, +)
            XCTAssertEqual(c.outcomes, Self.expectedOutcomes[name] ?? ["ok": total], name)
        }
    }
}

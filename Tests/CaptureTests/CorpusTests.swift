import Capture
import Foundation
import Wire
import XCTest

/// The third-party corpus in ../shared/captures (outside the repo): every file opens, has the
/// packet count of MANIFEST.md, and agrees with libpcap packet by packet where libpcap reads it.
final class CorpusTests: XCTestCase {
    /// The `Pkts` column of /work/shared/captures/MANIFEST.md (counts from capinfos).
    static let expectedCounts: [String: Int] = [
        "tcp/zeek-http-get.pcap": 14,
        "tcp/ssh.pcap": 54,
        "tcp/ecdhe.pcap": 28,
        "tcp/hrr.pcap": 19,
        "udp/dns_udp.pcap": 2,
        "udp/ntp.pcap": 8,
        "udp/chromium-115.0.5790.110-api-cirrus-com.pcap": 19,
        "icmp/5-pings.pcap": 10,
        "icmp/icmp-destunreach-udp.pcap": 1,
        "icmp/icmp-destunreach-ip.pcap": 1,
        "icmp/icmp-timeexceeded.pcap": 1,
        "icmp/nintendo.pcap": 1000,
        "icmp/smtp.pcap": 125,
        "fragments/fragmented-3.pcap": 5,
        "fragments/fragmented-4.pcap": 6,
        "fragments/fragmented-syn.pcap": 2,
        "fragments/afs.pcap": 601,
        "fragments/ipv4frags.pcap": 3,
        "fragments/frag-eth-vlan-ip-tcp-syn.pcap": 3,
        "fragments/defrag-af-confusion-spray-h8.pcap": 16384,
        "ipopts/suricata-detect-ipopts.pcap": 8,
        "ipopts/IGMP_V2.pcap": 18,
        "ipopts/ip_secopt.pcap": 3,
        "linktypes/suricata-bug-5758.pcap": 41,
        "linktypes/flow-test-01.pcap": 7,
        "linktypes/irc-starttls.pcap": 20,
        "linktypes/suricata-decode-sll2-02.pcap": 159,
        "linktypes/linux_dlt_sll2.pcap": 6,
        "linktypes/http-vlan-0.pcap": 14,
        "linktypes/vlan-qinqinq.pcap": 14,
        "linktypes/802.1ad_QinQ.pcap": 2,
        "linktypes/vlan-pcp-dei.pcapng": 9,
        "formats/tcp-handshake-nano.pcap": 3,
        "formats/get-to-ssh-server.pcap": 9,
        "formats/pptp.pcap": 23,
        "formats/nfsv3.pcap": 128,
        "formats/pcapng-multi-interface.pcapng": 6,
        "formats/cooper-grill-dvwa.pcapng": 64,
        "formats/pcapng-test-generator-be-test001.pcapng": 4,
        "formats/pcapng-test-generator-be-test006.pcapng": 5,
        "formats/pcapng-test-generator-le-test202.pcapng": 8,
        "ipv6/icmp6-ping.pcap": 8,
        "ipv6/zeek-communityid-ipv6.pcap": 17,
        "ipv6/ipv6-fragmented-dns.pcap": 8,
        "ipv6/ipv6-http-atomic-frag.pcap": 38,
        "ipv6/LINKTYPE_RAW_ipv6.pcap": 1,
        "malformed/ipv4_invalid_hdr_length.pcap": 1,
        "malformed/ipv4-truncated-broken-header.pcap": 1,
        "malformed/ipv4_invalid_total_length.pcap": 1,
        "malformed/truncated-header.pcap": 24,
        "malformed/trunc-hdr.pcap": 1,
        "malformed/icmp-header-trunc.pcap": 2,
        "malformed/zeek-communityid-tcp.pcap": 12,
        "malformed/ip4-bad-chksum.pcap": 1,
        "malformed/ip4-tcp-bad-chksum.pcap": 1,
        "malformed/localhost-bad-chksum.pcap": 10,
        "malformed/suricata-tcp-session-decode-malformed-ipv4.pcap": 11,
        "malformed/suricata-ipv4-truncated.pcap": 1,
        "malformed/timestamp_invalid_micro.pcap": 3,
        "malformed/ip_fragmented_garbage.pcap": 1252,
        "bulk/echo-connections.pcap": 82582,
        "bulk/1kxun.pcap": 1723,
        "bulk/gnutella.pcap": 3905,
        "bulk/emix.pcap": 7133,
    ]

    /// <repo>/../shared/captures, found from this source file so it works from any worktree.
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // CaptureTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // repo root
        .appendingPathComponent("../shared/captures").standardized

    /// Paths relative to `directory`, sorted; nil (with a loud note) when the corpus is absent.
    static func corpus() -> [String]? {
        guard FileManager.default.fileExists(atPath: directory.path) else {
            print("SKIPPED: ../shared/captures not found (looked in \(directory.path))")
            return nil
        }
        let all = FileManager.default.enumerator(atPath: directory.path)?.compactMap { $0 as? String } ?? []
        return all.filter { $0.hasSuffix(".pcap") || $0.hasSuffix(".pcapng") }.sorted()
    }

    /// A record as libpcap 1.10 reports it. For classic pcap, libpcap differs from the file (and
    /// from this reader and tshark) in two ways, both in sf-pcap.c: it reads the fraction field
    /// as a signed 32-bit number (malformed/timestamp_invalid_micro.pcap has usec = 2^31), and
    /// it cuts a captured length above the header's snap length down to it
    /// (malformed/trunc-hdr.pcap: snaplen 1, caplen 8).
    static func libpcapView(of file: CaptureFile, record i: Int) -> (Int, Int, Int64) {
        let record = file.records[i]
        guard case let .pcap(bigEndian, nanosecond) = file.format else {
            return (record.capturedLength, record.originalLength, record.timestampNanos)
        }
        let fractionOffset = record.offset - 12  // record header bytes 4-7
        let fraction = file.withUnsafeBytes { bigEndian ? $0.be32(fractionOffset) : $0.le32(fractionOffset) }
        let signedCorrection: Int64 = fraction >= 1 << 31 ? (1 << 32) * (nanosecond ? 1 : 1000) : 0
        let snapLength = Int(file.interfaces[0].snapLength)
        let capturedLength = snapLength == 0 ? record.capturedLength : min(record.capturedLength, snapLength)
        return (capturedLength, record.originalLength, record.timestampNanos - signedCorrection)
    }

    func testEveryFileOpensWithTheManifestCount() throws {
        guard let files = Self.corpus() else { return }
        XCTAssertEqual(Set(files), Set(Self.expectedCounts.keys), "corpus and MANIFEST table differ")
        for relative in files {
            let file = try CaptureFile.open(path: Self.directory.appendingPathComponent(relative).path)
            XCTAssertEqual(file.records.count, Self.expectedCounts[relative], relative)
            assertRecordsInBounds(file)
            XCTAssertFalse(file.interfaces.isEmpty, relative)
            for warning in file.warnings { print("note: \(relative): \(warning)") }
        }
    }

    /// libpcap refuses the two vectors with a second link type, so they are pinned here instead:
    /// lengths and times agree with tshark; the interface of each packet was read off a block
    /// dump (tshark 4.0 names section 2's interface "eth0", its IDB says otherwise).
    func testVectorsLibpcapRefuses() throws {
        guard Self.corpus() != nil else { return }
        let t0: Int64 = 1_340_954_905_298_858_000
        let be006 = try CaptureFile.open(
            path: Self.directory.appendingPathComponent("formats/pcapng-test-generator-be-test006.pcapng").path)
        XCTAssertEqual(be006.interfaces.map(\.name), ["eth0", "en1"])
        XCTAssertEqual(be006.interfaces.map(\.linkType), [.ethernet, .null])
        XCTAssertEqual(be006.records.map(\.interface), [0, 1, 0, 0, 0])
        XCTAssertEqual(be006.timestamps, (0 ..< 5).map { t0 + $0 * 1_000_000 })
        XCTAssertEqual(be006.records.map(\.capturedLength), [96, 168, 96, 96, 96])
        XCTAssertEqual(be006.records.map(\.originalLength), [314, 168, 342, 314, 342])

        let le202 = try CaptureFile.open(
            path: Self.directory.appendingPathComponent("formats/pcapng-test-generator-le-test202.pcapng").path)
        XCTAssertEqual(le202.interfaces.map(\.name), ["eth0", "null1", "silly ethernet interface 2", "eth0", "null1"])
        XCTAssertEqual(le202.interfaces.map(\.snapLength), [96, 0, 128, 96, 0])
        XCTAssertEqual(le202.records.map(\.interface), [0, 0, 1, 2, 2, 2, 2, 4])
        XCTAssertEqual(le202.timestamps, [t0, t0, t0 + 3_000_000, 0, t0, 0, t0, t0 + 3_000_000])  // SPBs: 0
        XCTAssertEqual(le202.records.map(\.capturedLength), [96, 96, 168, 128, 128, 128, 128, 168])
        XCTAssertEqual(le202.records.map(\.originalLength), [314, 342, 168, 314, 342, 314, 342, 168])
        XCTAssertEqual(le202.warnings, [])
    }

    func testRecordsMatchLibpcap() throws {
        guard let files = Self.corpus() else { return }
        var crossChecked = 0
        for relative in files {
            let path = Self.directory.appendingPathComponent(relative).path
            let file = try CaptureFile.open(path: path)
            var mismatches = 0
            let outcome = Libpcap.forEachPacket(path: path) { i, packet in
                guard mismatches < 5 else { return }  // one broken file should not flood the log
                guard i < file.records.count else {
                    XCTFail("\(relative): libpcap has packet \(i), we have \(file.records.count)"); mismatches += 1; return
                }
                let ours = Self.libpcapView(of: file, record: i)
                let theirs = (packet.capturedLength, packet.originalLength, packet.timestampNanos)
                let sameBytes = file.withFrame(i) { $0.prefix(packet.capturedLength).elementsEqual(packet.bytes) }
                if ours != theirs || !sameBytes {
                    XCTFail("\(relative) packet \(i): ours \(ours), libpcap \(theirs), same bytes \(sameBytes)")
                    mismatches += 1
                }
            }
            switch outcome {
            case let .finished(packets):
                XCTAssertEqual(packets, file.records.count, "\(relative): packet count vs libpcap")
                crossChecked += 1
            case let .refused(reason):
                print("note: libpcap cross-check skipped for \(relative): libpcap refuses it: \(reason)")
            case let .stopped(packets, reason):
                print("note: libpcap cross-check of \(relative) ends after \(packets) of \(file.records.count) "
                    + "packets: \(reason)")
            }
        }
        print("libpcap cross-checked \(crossChecked) of \(files.count) files completely")
        XCTAssertGreaterThan(crossChecked, files.count / 2, "libpcap should read most of the corpus")
    }
}

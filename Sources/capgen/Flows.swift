// `capgen flows N OUT.pcap [--packets K] [--size BYTES] `: a synthetic capture of N
// concurrent UDP flows for `sluice bench` sweeps (connections, packet size). Not part of the
// committed captures: write it to a temporary directory.
//
// Flow i: client 10.0.0.0 + i (so every flow has its own source address, and N may go up to
// 2^24), port 10000 + i % 50000, to server 100.64.0.0 + (i * 2654435761) % 2^22 port 443.
// K packets per flow, alternating client->server and server->client (a reply), sent in K
// rounds: round r sends packet r of every flow, in flow order, so all N flows are open at once.
// Packets are 1 µs apart. BYTES is the Ethernet frame length without FCS (>= 42: Ethernet,
// IPv4 and UDP headers); the UDP payload fills the rest.
//
// --replies-to ADDR REPLIES.pcap: the replies go to a second file, addressed to ADDR (the
// client port kept), as they arrive on the outside of a box that masqueraded the requests
// behind ADDR.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Wire

enum FlowCapture {
    static func main(_ args: [String]) -> Int32 {
        var positional: [String] = []
        var packetsPerFlow = 2, size = 64
        var repliesTo: (address: IPv4Address, path: String)? = nil
        var k = 0
        while k < args.count {
            let a = args[k]
            func value() -> Int? { k += 1; return k < args.count ? Int(args[k]) : nil }
            switch a {
            case "--packets": guard let v = value(), v >= 1 else { return usage() }; packetsPerFlow = v
            case "--size": guard let v = value(), v >= 42, v <= 1514 else { return usage() }; size = v
            case "--replies-to":
                guard k + 2 < args.count, let a = IPv4Address(Substring(args[k + 1])) else { return usage() }
                repliesTo = (a, args[k + 2])
                k += 2
            default: positional.append(a)
            }
            k += 1
        }
        guard positional.count == 2, let n = Int(positional[0]), n >= 1, n <= 1 << 24 else { return usage() }
        let path = positional[1]
        let payload = [UInt8](repeating: 0x5A, count: size - 42)
        let clientMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0xFE], boxMAC: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
        let t0: Int64 = 1_767_225_600 * 1_000_000_000
        do {
            let w = try PcapWriter(path: path, linkTypeRaw: LinkType.ethernet.rawValue, resolution: .microsecond)
            let rw = try repliesTo.map { try PcapWriter(path: $0.path, linkTypeRaw: LinkType.ethernet.rawValue, resolution: .microsecond) } ?? w
            var t = t0
            for round in 0 ..< packetsPerFlow {
                for i in 0 ..< n {
                    let client = IPv4Address(0x0A00_0000 &+ UInt32(i))
                    let server = IPv4Address(0x6440_0000 | UInt32((UInt64(i) &* 2_654_435_761) & 0x3F_FFFF))
                    let cport = UInt16(10000 + i % 50000)
                    let ip = round % 2 == 0
                        ? PacketBuilder.udp(source: client, destination: server, sourcePort: cport, destinationPort: 443, payload: payload,
                                            identification: UInt16(truncatingIfNeeded: round))
                        : PacketBuilder.udp(source: server, destination: repliesTo?.address ?? client, sourcePort: 443, destinationPort: cport,
                                            payload: payload, identification: UInt16(truncatingIfNeeded: round))
                    try (round % 2 == 0 ? w : rw).append(frame: PacketBuilder.ethernet(destination: boxMAC, source: clientMAC, payload: ip), timestampNanos: t)
                    t += 1000
                }
            }
            try w.close()
            if repliesTo != nil { try rw.close() }
            print("wrote \(path): \(n) flows, \(n * packetsPerFlow) packets of \(size) bytes")
            return 0
        } catch {
            print("capgen flows: \(error)")
            return 1
        }
    }

    static func usage() -> Int32 {
        print("usage: capgen flows N OUT.pcap [--packets K (default 2)] [--size FRAME_BYTES (42-1514, default 64)] [--replies-to ADDR REPLIES.pcap]")
        return 2
    }
}

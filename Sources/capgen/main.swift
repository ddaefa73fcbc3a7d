// capgen: writes the project's own small captures into a directory (default: captures/).
// Deterministic: same bytes every run (fixed addresses, ports, timestamps, payloads), so the
// committed outputs can be regenerated and compared (`make captures`; a test checks they match).
//
// The scenario is an edge box ("the router"): eth0 = WAN 203.0.113.1/24 (gateway .254),
// eth1 = LAN 192.168.1.1/24. Each file holds what arrives on one interface.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Wire

let outDir = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "captures"
let t0: Int64 = 1_767_225_600 * 1_000_000_000  // 2026-01-01T00:00:00Z

let routerWAN = IPv4Address(203, 0, 113, 1)
let routerLAN = IPv4Address(192, 168, 1, 1)
let lanHost = IPv4Address(192, 168, 1, 10)
let lanServer = IPv4Address(192, 168, 1, 20)
let internetClient = IPv4Address(198, 51, 100, 7)
let webServer = IPv4Address(93, 184, 216, 34)
let resolver = IPv4Address(9, 9, 9, 9)
let pingTarget = IPv4Address(8, 8, 8, 8)

let macRouterWAN: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01]
let macRouterLAN: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01]
let macUpstream: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xFE]
let macLanHost: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x0A]
let macLanServer: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x14]

struct Frame { var ts: Int64; var bytes: [UInt8] }

/// Frames arriving on the WAN side come from the upstream router's MAC to ours.
func wan(_ ip: [UInt8]) -> [UInt8] { PacketBuilder.ethernet(destination: macRouterWAN, source: macUpstream, payload: ip) }
func lan(_ ip: [UInt8], from mac: [UInt8] = macLanHost) -> [UInt8] { PacketBuilder.ethernet(destination: macRouterLAN, source: mac, payload: ip) }

let mssOption: [UInt8] = [0x02, 0x04, 0x05, 0xb4]

/// A TCP conversation: handshake, one request, one response, FIN both ways. `a` is the
/// client's view (what arrives on the client side), `b` the server's replies as they arrive on
/// the server side (addresses as seen there).
func tcpConversation(client: IPv4Address, cport: UInt16, server: IPv4Address, sport: UInt16,
                     replyFrom: IPv4Address, replyTo: IPv4Address, replyDport: UInt16,
                     request: String, response: String, start: Int64,
                     clientFrame: ([UInt8]) -> [UInt8], serverFrame: ([UInt8]) -> [UInt8]) -> (client: [Frame], server: [Frame]) {
    var c: [Frame] = [], s: [Frame] = []
    let ms: Int64 = 1_000_000
    let isn: UInt32 = 1000, rsn: UInt32 = 5000
    let req = Array(request.utf8), resp = Array(response.utf8)
    var id: UInt16 = 100
    func C(_ t: Int64, _ flags: TCPFlags, _ seq: UInt32, _ ack: UInt32, _ payload: [UInt8] = [], opts: [UInt8] = []) {
        id += 1
        c.append(Frame(ts: start + t * ms, bytes: clientFrame(PacketBuilder.tcp(source: client, destination: server, sourcePort: cport, destinationPort: sport,
                                                                                sequence: seq, acknowledgment: ack, flags: flags, options: opts, payload: payload, identification: id))))
    }
    func S(_ t: Int64, _ flags: TCPFlags, _ seq: UInt32, _ ack: UInt32, _ payload: [UInt8] = [], opts: [UInt8] = []) {
        id += 1
        s.append(Frame(ts: start + t * ms, bytes: serverFrame(PacketBuilder.tcp(source: replyFrom, destination: replyTo, sourcePort: sport == replyDport ? sport : sport, destinationPort: replyDport,
                                                                                sequence: seq, acknowledgment: ack, flags: flags, options: opts, payload: payload, identification: id))))
    }
    C(0, .syn, isn, 0, opts: mssOption)
    S(1, [.syn, .ack], rsn, isn + 1, opts: mssOption)
    C(2, .ack, isn + 1, rsn + 1)
    C(3, [.psh, .ack], isn + 1, rsn + 1, req)
    S(4, .ack, rsn + 1, isn + 1 + UInt32(req.count))
    S(5, [.psh, .ack], rsn + 1, isn + 1 + UInt32(req.count), resp)
    C(6, .ack, isn + 1 + UInt32(req.count), rsn + 1 + UInt32(resp.count))
    C(7, [.fin, .ack], isn + 1 + UInt32(req.count), rsn + 1 + UInt32(resp.count))
    S(8, [.fin, .ack], rsn + 1 + UInt32(resp.count), isn + 2 + UInt32(req.count))
    C(9, .ack, isn + 2 + UInt32(req.count), rsn + 2 + UInt32(resp.count))
    return (c, s)
}

let sec: Int64 = 1_000_000_000

// 1. Port forward: an Internet client reaches 203.0.113.1:8080, forwarded (DNAT) to the LAN
//    server 192.168.1.20:22. Client packets arrive on eth0; the server's replies arrive on eth1
//    addressed to the client (the router reverses the DNAT on the way out).
let pf = tcpConversation(client: internetClient, cport: 40000, server: routerWAN, sport: 8080,
                         replyFrom: lanServer, replyTo: internetClient, replyDport: 40000,
                         request: "SSH-2.0-client\r\n", response: "SSH-2.0-server\r\n", start: t0,
                         clientFrame: wan, serverFrame: { lan($0, from: macLanServer) })
// The server side of a port forward answers from port 22.
let pfServer = pf.server.map { f -> Frame in
    var b = f.bytes
    // Source port 8080 -> 22 in the server's replies, checksum fixed incrementally.
    b.withUnsafeMutableBytes { m in
        let l4 = 14 + 20
        m.setBE16(l4 + 16, Checksum.update(m.be16(l4 + 16), old: m.be16(l4), new: 22))
        m.setBE16(l4, 22)
    }
    return Frame(ts: f.ts, bytes: b)
}

// 2. Outbound NAT: a LAN host fetches http://93.184.216.34/; requests arrive on eth1, replies
//    arrive on eth0 addressed to the router's WAN address (after MASQUERADE, port kept).
let nat = tcpConversation(client: lanHost, cport: 50000, server: webServer, sport: 80,
                          replyFrom: webServer, replyTo: routerWAN, replyDport: 50000,
                          request: "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", response: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                          start: t0 + 2 * sec, clientFrame: { lan($0) }, serverFrame: wan)

// 3. Pings: the LAN host pings 8.8.8.8 three times (replies come back to the WAN address), and
//    pings the router's LAN address once.
var pingLAN: [Frame] = [], pingWAN: [Frame] = []
for i in 0 ..< 3 {
    let ts = t0 + 4 * sec + Int64(i) * sec
    pingLAN.append(Frame(ts: ts, bytes: lan(PacketBuilder.icmpEcho(source: lanHost, destination: pingTarget, request: true, identifier: 0x4242, sequence: UInt16(i + 1), identification: UInt16(200 + i)))))
    pingWAN.append(Frame(ts: ts + 12_000_000, bytes: wan(PacketBuilder.icmpEcho(source: pingTarget, destination: routerWAN, request: false, identifier: 0x4242, sequence: UInt16(i + 1), ttl: 117, identification: UInt16(300 + i)))))
}
pingLAN.append(Frame(ts: t0 + 7 * sec, bytes: lan(PacketBuilder.icmpEcho(source: lanHost, destination: routerLAN, request: true, identifier: 0x4243, sequence: 1, identification: 210))))

// 4. UDP: a DNS query from the LAN host to 9.9.9.9 and its answer.
let dnsQuery: [UInt8] = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1]
let dnsAnswer: [UInt8] = [0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 7] + Array("example".utf8) + [3] + Array("com".utf8) + [0, 0, 1, 0, 1,
                           0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 93, 184, 216, 34]
let udpLAN = [Frame(ts: t0 + 8 * sec, bytes: lan(PacketBuilder.udp(source: lanHost, destination: resolver, sourcePort: 53000, destinationPort: 53, payload: dnsQuery, identification: 400)))]
let udpWAN = [Frame(ts: t0 + 8 * sec + 9_000_000, bytes: wan(PacketBuilder.udp(source: resolver, destination: routerWAN, sourcePort: 53, destinationPort: 53000, payload: dnsAnswer, ttl: 57, identification: 401)))]

// 5. Malformed and odd frames arriving on eth0, one per reason, plus IPv6 and ARP (passed).
var bad: [Frame] = []
var bt = t0 + 9 * sec
@MainActor func addBad(_ b: [UInt8]) { bad.append(Frame(ts: bt, bytes: b)); bt += 1_000_000 }
let goodUDP = PacketBuilder.udp(source: internetClient, destination: routerWAN, sourcePort: 1234, destinationPort: 5678, payload: Array("hello".utf8), identification: 500)
addBad(Array(wan(goodUDP)[0 ..< 10]))                                     // truncated-link-header
do { var p = goodUDP; p[0] = 0x44; addBad(wan(p)) }                      // bad-ihl
do { var p = goodUDP; p[0] = 0x65; addBad(wan(p)) }                      // bad-ip-version
addBad(wan(Array(goodUDP[0 ..< 16])))                                    // truncated-ipv4-header
do { var p = goodUDP; p.setBE16(2, 200); addBad(wan(p)) }                // ip-total-length-beyond-capture
do {
    var p = PacketBuilder.tcp(source: internetClient, destination: routerWAN, sourcePort: 1234, destinationPort: 22, flags: .syn, identification: 501)
    p[32] = 0x30; addBad(wan(p))                                          // bad-tcp-data-offset
}
do {
    var p = PacketBuilder.tcp(source: internetClient, destination: routerWAN, sourcePort: 1234, destinationPort: 22, flags: .syn, identification: 502)
    p[32] = 0xF0; addBad(wan(p))                                          // tcp-data-offset-beyond-packet
}
do { var p = goodUDP; p.setBE16(24, 400); addBad(wan(p)) }               // bad-udp-length
addBad(wan(PacketBuilder.icmpError(source: IPv4Address(198, 51, 100, 1), destination: routerWAN, type: 3, code: 1, quoting: goodUDP, quoteLength: 20)))  // icmp-error-short-quote
addBad(wan(PacketBuilder.ipv4(source: internetClient, destination: routerWAN, proto: IPProtocol.udp, payload: [0, 1, 0, 2, 0, 8, 0, 0], options: [7, 12, 4, 0])))  // bad-ip-options
do { var p = goodUDP; p[10] ^= 0x5A; addBad(wan(p)) }                    // bad IPv4 header checksum: recorded, not dropped
addBad(PacketBuilder.ethernet(destination: macRouterWAN, source: macUpstream, etherType: EtherType.ipv6,
                              payload: [0x60, 0, 0, 0, 0, 8, 17, 64] + Array(repeating: 0x20, count: 15) + [1] + Array(repeating: 0x20, count: 15) + [2] + [0, 1, 0, 2, 0, 8, 0, 0]))  // IPv6: passed
addBad(PacketBuilder.ethernet(destination: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], source: macUpstream, etherType: EtherType.arp,
                              payload: [0, 1, 8, 0, 6, 4, 0, 1] + macUpstream + [203, 0, 113, 254] + [0, 0, 0, 0, 0, 0] + [203, 0, 113, 1]))  // ARP: passed

@MainActor func write(_ name: String, _ frames: [Frame]) throws {
    let w = try PcapWriter(path: outDir + "/" + name, linkTypeRaw: LinkType.ethernet.rawValue, resolution: .microsecond)
    for f in frames.sorted(by: { $0.ts < $1.ts }) { try w.append(frame: f.bytes, timestampNanos: f.ts) }
    try w.close()
    print("wrote \(outDir)/\(name): \(frames.count) packets")
}

do {
    try write("port-forward-eth0.pcap", pf.client)
    try write("port-forward-eth1.pcap", pfServer)
    try write("outbound-nat-eth1.pcap", nat.client)
    try write("outbound-nat-eth0.pcap", nat.server)
    try write("ping-eth1.pcap", pingLAN)
    try write("ping-eth0.pcap", pingWAN)
    try write("udp-eth1.pcap", udpLAN)
    try write("udp-eth0.pcap", udpWAN)
    try write("malformed-eth0.pcap", bad)
    // Everything arriving on each interface, for the demo.
    try write("edge-eth0.pcap", pf.client + nat.server + pingWAN + udpWAN + bad)
    try write("edge-eth1.pcap", pfServer + nat.client + pingLAN + udpLAN)
} catch {
    print("capgen: \(error)")
    exit(1)
}

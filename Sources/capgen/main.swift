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

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "flows" {
    exit(FlowCapture.main(Array(CommandLine.arguments.dropFirst(2))))
}
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

// ---------------------------------------------------------------------------------------------
// NAT scenarios (golden and kernel-differential tests: Tests/ReplayTests/NATGoldenTests.swift,
// NATKernelDifferentialTests.swift; rules and network models in examples/nat/). Replies carry
// the addresses and ports Sluice chooses; where the kernel chooses differently (a SNAT port
// after a clash) the kernel test rewrites them to the kernel's choice before injecting.

let lanHost30 = IPv4Address(192, 168, 1, 30)
let macLanHost30: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x1E]
let tNAT: Int64 = t0 + 100 * sec

/// The server's replies of a conversation with their TCP source port changed (a port forward's
/// server answers from the forwarded-to port), checksum fixed incrementally.
func withReplySourcePort(_ frames: [Frame], _ port: UInt16) -> [Frame] {
    frames.map { f in
        var b = f.bytes
        b.withUnsafeMutableBytes { m in
            let l4 = 14 + 20
            m.setBE16(l4 + 16, Checksum.update(m.be16(l4 + 16), old: m.be16(l4), new: port))
            m.setBE16(l4, port)
        }
        return Frame(ts: f.ts, bytes: b)
    }
}

/// A TCP conversation through the edge box: client on the LAN (eth1), server on the Internet,
/// replies arriving on `uplink` addressed to `natAddress:natPort`.
@MainActor func outbound(_ host: IPv4Address, mac: [UInt8], cport: UInt16, server: IPv4Address, sport: UInt16,
                         natAddress: IPv4Address, natPort: UInt16, start: Int64,
                         uplinkFrame: @escaping ([UInt8]) -> [UInt8] = wan) -> (lan: [Frame], wan: [Frame]) {
    let c = tcpConversation(client: host, cport: cport, server: server, sport: sport,
                            replyFrom: server, replyTo: natAddress, replyDport: natPort,
                            request: "GET / HTTP/1.1\r\n\r\n", response: "HTTP/1.1 204 No Content\r\n\r\n",
                            start: start, clientFrame: { lan($0, from: mac) }, serverFrame: uplinkFrame)
    return (c.client, c.server)
}

// N2. SNAT port clash: two LAN hosts, same source port, same server:port, through
//     `SNAT --to-source 203.0.113.1` (the second needs another port: Sluice takes 40001), and
//     the same pair towards 198.51.100.80:443 through `--to-source 203.0.113.1:1024-1030`
//     (40000 is out of range: Sluice takes 1027, then 1028).
@MainActor func snatClashScenario() -> (eth0: [Frame], eth1: [Frame]) {
    let ms: Int64 = 1_000_000
    let rangeServer = IPv4Address(198, 51, 100, 80)
    let a = outbound(lanHost, mac: macLanHost, cport: 40000, server: webServer, sport: 80, natAddress: routerWAN, natPort: 40000, start: tNAT)
    let b = outbound(lanServer, mac: macLanServer, cport: 40000, server: webServer, sport: 80, natAddress: routerWAN, natPort: 40001, start: tNAT + 5 * ms)
    let c = outbound(lanHost, mac: macLanHost, cport: 40000, server: rangeServer, sport: 443, natAddress: routerWAN, natPort: 1027, start: tNAT + 100 * ms)
    let d = outbound(lanServer, mac: macLanServer, cport: 40000, server: rangeServer, sport: 443, natAddress: routerWAN, natPort: 1028, start: tNAT + 105 * ms)
    return (a.wan + b.wan + c.wan + d.wan, a.lan + b.lan + c.lan + d.lan)
}

// N3. NETMAP both ways: 198.51.100.7 reaches 172.16.8.20:22 (mapped to 192.168.1.20); the LAN
//     hosts .10 (TCP) and .30 (UDP) leave as 172.16.9.10 and 172.16.9.30.
@MainActor func netmapScenario() -> (eth0: [Frame], eth1: [Frame]) {
    let inbound = tcpConversation(client: internetClient, cport: 41000, server: IPv4Address(172, 16, 8, 20), sport: 22,
                                  replyFrom: lanServer, replyTo: internetClient, replyDport: 41000,
                                  request: "SSH-2.0-client\r\n", response: "SSH-2.0-server\r\n", start: tNAT,
                                  clientFrame: wan, serverFrame: { lan($0, from: macLanServer) })
    let out = outbound(lanHost, mac: macLanHost, cport: 50000, server: webServer, sport: 80,
                       natAddress: IPv4Address(172, 16, 9, 10), natPort: 50000, start: tNAT + 20_000_000)
    let q = Frame(ts: tNAT + 40_000_000, bytes: lan(PacketBuilder.udp(source: lanHost30, destination: resolver, sourcePort: 53000, destinationPort: 53,
                                                                       payload: dnsQuery, identification: 600), from: macLanHost30))
    let r = Frame(ts: tNAT + 49_000_000, bytes: wan(PacketBuilder.udp(source: resolver, destination: IPv4Address(172, 16, 9, 30), sourcePort: 53, destinationPort: 53000,
                                                                       payload: dnsAnswer, ttl: 57, identification: 601)))
    return (inbound.client + out.wan + [r], inbound.server + out.lan + [q])
}

// N4. Hairpin: the LAN host .10 reaches the port forward 203.0.113.1:8080 -> 192.168.1.20:22
//     from the inside; MASQUERADE of LAN-to-LAN traffic makes the server answer the router
//     (192.168.1.1, port kept), so the replies come back through it. An Internet client uses
//     the same forward meanwhile (not masqueraded).
@MainActor func hairpinScenario() -> (eth0: [Frame], eth1: [Frame]) {
    let inside = tcpConversation(client: lanHost, cport: 45000, server: routerWAN, sport: 8080,
                                 replyFrom: lanServer, replyTo: routerLAN, replyDport: 45000,
                                 request: "SSH-2.0-inside\r\n", response: "SSH-2.0-server\r\n", start: tNAT,
                                 clientFrame: { lan($0) }, serverFrame: { lan($0, from: macLanServer) })
    let outside = tcpConversation(client: internetClient, cport: 40000, server: routerWAN, sport: 8080,
                                  replyFrom: lanServer, replyTo: internetClient, replyDport: 40000,
                                  request: "SSH-2.0-client\r\n", response: "SSH-2.0-server\r\n", start: tNAT + 4_000_000,
                                  clientFrame: wan, serverFrame: { lan($0, from: macLanServer) })
    return (outside.client, inside.client + withReplySourcePort(inside.server, 22) + withReplySourcePort(outside.server, 22))
}

// N5. ICMP errors about masqueraded flows, arriving on eth0 addressed to 203.0.113.1 and quoting
//     the packets as the router sent them: a port unreachable from 9.9.9.9 about a UDP query
//     (whole datagram quoted), a fragmentation needed (next-hop MTU 1280) from a router on the
//     path about a 1400-byte TCP segment (IP + TCP header + 8 payload bytes quoted), and a time
//     exceeded from that router about a UDP probe sent with TTL 2.
@MainActor func icmpErrorScenario() -> (eth0: [Frame], eth1: [Frame]) {
    let ms: Int64 = 1_000_000
    let pathRouter = IPv4Address(198, 51, 100, 254)
    var e0: [Frame] = [], e1: [Frame] = []
    func icmpErr(from: IPv4Address, type: UInt8, code: UInt8, rest: UInt32, quote: [UInt8], id: UInt16) -> [UInt8] {
        PacketBuilder.ipv4(source: from, destination: routerWAN, proto: IPProtocol.icmp,
                           payload: PacketBuilder.icmpMessage(type: type, code: code, rest: rest, body: quote),
                           ttl: 60, identification: id, dontFragment: false)
    }
    // UDP: the query as sent (from the LAN) and as the router forwarded it (masqueraded, TTL 63).
    let query = PacketBuilder.udp(source: lanHost, destination: resolver, sourcePort: 53001, destinationPort: 53, payload: dnsQuery, identification: 700)
    let queryOut = PacketBuilder.udp(source: routerWAN, destination: resolver, sourcePort: 53001, destinationPort: 53, payload: dnsQuery, ttl: 63, identification: 700)
    e1.append(Frame(ts: tNAT, bytes: lan(query)))
    e0.append(Frame(ts: tNAT + 5 * ms, bytes: wan(icmpErr(from: resolver, type: 3, code: 3, rest: 0, quote: queryOut, id: 701))))
    // TCP: handshake, then a segment too big for the path.
    let srv = IPv4Address(93, 184, 216, 34)
    func c(_ flags: TCPFlags, _ seq: UInt32, _ ack: UInt32, _ payload: [UInt8] = [], src: IPv4Address = lanHost, ttl: UInt8 = 64, id: UInt16) -> [UInt8] {
        PacketBuilder.tcp(source: src, destination: srv, sourcePort: 50010, destinationPort: 443, sequence: seq, acknowledgment: ack,
                          flags: flags, options: flags == .syn ? mssOption : [], payload: payload, ttl: ttl, identification: id)
    }
    e1.append(Frame(ts: tNAT + 10 * ms, bytes: lan(c(.syn, 1000, 0, id: 710))))
    e0.append(Frame(ts: tNAT + 11 * ms, bytes: wan(PacketBuilder.tcp(source: srv, destination: routerWAN, sourcePort: 443, destinationPort: 50010, sequence: 9000, acknowledgment: 1001,
                                                                    flags: [.syn, .ack], options: mssOption, ttl: 55, identification: 711))))
    e1.append(Frame(ts: tNAT + 12 * ms, bytes: lan(c(.ack, 1001, 9001, id: 712))))
    let big = (0 ..< 1400).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    e1.append(Frame(ts: tNAT + 13 * ms, bytes: lan(c([.psh, .ack], 1001, 9001, big, id: 713))))
    let bigOut = c([.psh, .ack], 1001, 9001, big, src: routerWAN, ttl: 63, id: 713)
    e0.append(Frame(ts: tNAT + 14 * ms, bytes: wan(icmpErr(from: pathRouter, type: 3, code: 4, rest: 1280, quote: Array(bigOut[0 ..< 48]), id: 714))))
    // Time exceeded: a probe with TTL 2 leaves with TTL 1 and dies at the next router.
    let probe = PacketBuilder.udp(source: lanHost, destination: srv, sourcePort: 33434, destinationPort: 33435, payload: Array(repeating: 0x40, count: 12), ttl: 2, identification: 720)
    let probeOut = PacketBuilder.udp(source: routerWAN, destination: srv, sourcePort: 33434, destinationPort: 33435, payload: Array(repeating: 0x40, count: 12), ttl: 1, identification: 720)
    e1.append(Frame(ts: tNAT + 20 * ms, bytes: lan(probe)))
    e0.append(Frame(ts: tNAT + 21 * ms, bytes: wan(icmpErr(from: pathRouter, type: 11, code: 0, rest: 0, quote: Array(probeOut[0 ..< 28]), id: 721))))
    return (e0, e1)
}

// N6. CONNMARK balancing over two uplinks (eth0 203.0.113.1 via .254, eth2 192.0.2.1 via
//     192.0.2.254): four connections from the LAN; `statistic --mode nth --every 2 --packet 0`
//     marks every other new connection 1 (uplink eth0), the rest 2 (uplink eth2); the mark is
//     saved in the connection and restored for every later packet, so each connection stays on
//     its uplink and its replies come back there (MASQUERADE per uplink). Only the first
//     packet of a connection reaches the nth rule with mark 0: connections 0 and 2 get mark 1
//     (eth0), 1 and 3 mark 2 (eth2).
let uplink2 = IPv4Address(192, 0, 2, 1)
let macRouterUplink2: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x02, 0x01]
let macUpstream2: [UInt8] = [0x02, 0x00, 0x00, 0x00, 0x02, 0xFE]
func wan2(_ ip: [UInt8]) -> [UInt8] { PacketBuilder.ethernet(destination: macRouterUplink2, source: macUpstream2, payload: ip) }

@MainActor func connmarkScenario() -> (eth0: [Frame], eth1: [Frame], eth2: [Frame]) {
    let servers: [(IPv4Address, UInt16)] = [(webServer, 80), (resolver, 443), (IPv4Address(1, 1, 1, 1), 443), (webServer, 443)]
    var e0: [Frame] = [], e1: [Frame] = [], e2: [Frame] = []
    for (k, s) in servers.enumerated() {
        let viaEth2 = k % 2 == 1
        let host: IPv4Address = k < 2 ? lanHost : lanServer
        let mac: [UInt8] = k < 2 ? macLanHost : macLanServer
        let uplinkFrame: ([UInt8]) -> [UInt8] = viaEth2 ? { wan2($0) } : { wan($0) }
        let c = outbound(host, mac: mac, cport: UInt16(42000 + k), server: s.0, sport: s.1,
                         natAddress: viaEth2 ? uplink2 : routerWAN, natPort: UInt16(42000 + k),
                         start: tNAT + Int64(k) * 3_000_000, uplinkFrame: uplinkFrame)
        e1 += c.lan
        if viaEth2 { e2 += c.wan } else { e0 += c.wan }
    }
    return (e0, e1, e2)
}

// N7. Stateful filter (FORWARD and INPUT policy DROP, ESTABLISHED,RELATED accepted, new
//     connections only from the LAN): an outbound TCP conversation, a ping and a UDP query with
//     their replies (and a port unreachable about a second query, RELATED) get through; new
//     inbound traffic does not: a SYN to the router, a SYN and a ping to a LAN host, a SYN-ACK
//     nobody asked for, a UDP datagram to a port no connection uses.
@MainActor func statefulScenario() -> (eth0: [Frame], eth1: [Frame]) {
    let ms: Int64 = 1_000_000
    let conv = outbound(lanHost, mac: macLanHost, cport: 50020, server: webServer, sport: 80, natAddress: routerWAN, natPort: 50020, start: tNAT)
    var e0 = conv.wan, e1 = conv.lan
    e1.append(Frame(ts: tNAT + 20 * ms, bytes: lan(PacketBuilder.icmpEcho(source: lanHost, destination: pingTarget, request: true, identifier: 0x77, sequence: 1, identification: 800))))
    e0.append(Frame(ts: tNAT + 21 * ms, bytes: wan(PacketBuilder.icmpEcho(source: pingTarget, destination: routerWAN, request: false, identifier: 0x77, sequence: 1, ttl: 117, identification: 801))))
    let q1 = PacketBuilder.udp(source: lanHost, destination: resolver, sourcePort: 53010, destinationPort: 53, payload: dnsQuery, identification: 802)
    e1.append(Frame(ts: tNAT + 22 * ms, bytes: lan(q1)))
    e0.append(Frame(ts: tNAT + 23 * ms, bytes: wan(PacketBuilder.udp(source: resolver, destination: routerWAN, sourcePort: 53, destinationPort: 53010, payload: dnsAnswer, ttl: 57, identification: 803))))
    let q2 = PacketBuilder.udp(source: lanHost, destination: resolver, sourcePort: 53011, destinationPort: 53, payload: dnsQuery, identification: 804)
    let q2Out = PacketBuilder.udp(source: routerWAN, destination: resolver, sourcePort: 53011, destinationPort: 53, payload: dnsQuery, ttl: 63, identification: 804)
    e1.append(Frame(ts: tNAT + 24 * ms, bytes: lan(q2)))
    e0.append(Frame(ts: tNAT + 25 * ms, bytes: wan(PacketBuilder.icmpError(source: resolver, destination: routerWAN, type: 3, code: 3, quoting: q2Out, ttl: 57))))
    // Unsolicited inbound traffic.
    e0.append(Frame(ts: tNAT + 30 * ms, bytes: wan(PacketBuilder.tcp(source: internetClient, destination: routerWAN, sourcePort: 41000, destinationPort: 22,
                                                                    sequence: 7000, flags: .syn, options: mssOption, identification: 810))))
    e0.append(Frame(ts: tNAT + 31 * ms, bytes: wan(PacketBuilder.tcp(source: internetClient, destination: lanServer, sourcePort: 41001, destinationPort: 22,
                                                                    sequence: 7100, flags: .syn, options: mssOption, identification: 811))))
    e0.append(Frame(ts: tNAT + 32 * ms, bytes: wan(PacketBuilder.icmpEcho(source: internetClient, destination: lanServer, request: true, identifier: 0x99, sequence: 1, identification: 812))))
    e0.append(Frame(ts: tNAT + 33 * ms, bytes: wan(PacketBuilder.tcp(source: internetClient, destination: routerWAN, sourcePort: 80, destinationPort: 50099,
                                                                    sequence: 7200, acknowledgment: 1, flags: [.syn, .ack], identification: 813))))
    e0.append(Frame(ts: tNAT + 34 * ms, bytes: wan(PacketBuilder.udp(source: resolver, destination: routerWAN, sourcePort: 53, destinationPort: 53999,
                                                                    payload: dnsAnswer, ttl: 57, identification: 814))))
    return (e0, e1)
}

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
    // NAT scenarios.
    let clash = snatClashScenario()
    try write("nat-snat-clash-eth0.pcap", clash.eth0)
    try write("nat-snat-clash-eth1.pcap", clash.eth1)
    let netmap = netmapScenario()
    try write("nat-netmap-eth0.pcap", netmap.eth0)
    try write("nat-netmap-eth1.pcap", netmap.eth1)
    let hairpin = hairpinScenario()
    try write("nat-hairpin-eth0.pcap", hairpin.eth0)
    try write("nat-hairpin-eth1.pcap", hairpin.eth1)
    let icmp = icmpErrorScenario()
    try write("nat-icmp-errors-eth0.pcap", icmp.eth0)
    try write("nat-icmp-errors-eth1.pcap", icmp.eth1)
    let cm = connmarkScenario()
    try write("nat-connmark-eth0.pcap", cm.eth0)
    try write("nat-connmark-eth1.pcap", cm.eth1)
    try write("nat-connmark-eth2.pcap", cm.eth2)
    let sf = statefulScenario()
    try write("nat-stateful-eth0.pcap", sf.eth0)
    try write("nat-stateful-eth1.pcap", sf.eth1)
} catch {
    print("capgen: \(error)")
    exit(1)
}

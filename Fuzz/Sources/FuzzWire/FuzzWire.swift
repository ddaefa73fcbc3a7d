import Wire
import FuzzSupport

/// Input: byte 0 picks the link type (modulo the number of link types), byte 1 the wire length
/// (0: the frame's own length; n: n - 1 bytes more on the wire than captured, as a snaplen cut
/// leaves them); the rest is the frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let all = LinkType.allCases
    let linkType = all[Int(data[0]) % all.count]
    let extra = Int(data[1])
    let frame = UnsafeRawBufferPointer(start: data + 2, count: size - 2)
    var p = ParsedPacket()
    let ok = PacketParser.parse(frame, linkType: linkType, wireLength: extra == 0 ? nil : frame.count + extra - 1, into: &p)
    precondition(ok == (p.drop == nil), "parse returned \(ok) with drop \(String(describing: p.drop))")
    guard ok, p.kind == .ipv4 else { return 0 }
    // What the engine reads after a successful parse: the header views, options, checksums.
    let l3 = Int(p.l3Offset)
    precondition(l3 >= 0 && l3 <= frame.count)
    let ipBytes = UnsafeRawBufferPointer(rebasing: frame[l3...])
    guard case .success(let ip) = IPv4View.check(ipBytes, missingBytes: 0) else {
        // A capture-truncated packet may fail the strict check; it passed with missing bytes.
        return 0
    }
    _ = ip.summary
    _ = IPv4Options.types(ip.options)
    _ = p.flowKey
    if p.hasL4 {
        let l4 = Int(p.l4Offset)
        precondition(l4 >= l3 && l4 <= frame.count)
        let l4Bytes = UnsafeRawBufferPointer(rebasing: frame[l4...])
        if p.proto == IPProtocol.tcp, case .success(let t) = TCPView.check(l4Bytes, fragmented: true) {
            _ = t.summary
            _ = t.optionsWellFormed
            _ = t.checksumValid(source: p.source, destination: p.destination)
        }
    }
    return 0
}


@_cdecl("FuzzWire_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}

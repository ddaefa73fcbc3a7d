/// Builds well-formed packets (correct lengths and checksums) for tests, the capture generator
/// and generated replies. Allocates; never used per packet on the hot path.
public enum PacketBuilder {
    public static func ipv4(source: IPv4Address, destination: IPv4Address, proto: UInt8, payload: [UInt8],
                            ttl: UInt8 = 64, identification: UInt16 = 0, dontFragment: Bool = true,
                            tos: UInt8 = 0, options: [UInt8] = [], fragmentOffset: Int = 0,
                            moreFragments: Bool = false) -> [UInt8] {
        precondition(options.count % 4 == 0 && options.count <= 40)
        let hlen = 20 + options.count
        var b: [UInt8] = []
        b.reserveCapacity(hlen + payload.count)
        b.append(0x40 | UInt8(hlen / 4))
        b.append(tos)
        b.appendBE16(UInt16(hlen + payload.count))
        b.appendBE16(identification)
        var ff = UInt16(fragmentOffset / 8) & 0x1FFF
        if dontFragment { ff |= 0x4000 }
        if moreFragments { ff |= 0x2000 }
        b.appendBE16(ff)
        b.append(ttl)
        b.append(proto)
        b.appendBE16(0)
        b.appendBE32(source.value)
        b.appendBE32(destination.value)
        b.append(contentsOf: options)
        let c = b.withUnsafeBytes { Checksum.compute($0) }
        b.setBE16(10, c)
        b.append(contentsOf: payload)
        return b
    }

    public static func tcpSegment(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16,
                                  destinationPort: UInt16, sequence: UInt32, acknowledgment: UInt32,
                                  flags: TCPFlags, window: UInt16 = 64240, options: [UInt8] = [],
                                  payload: [UInt8] = []) -> [UInt8] {
        precondition(options.count % 4 == 0)
        var t: [UInt8] = []
        t.appendBE16(sourcePort)
        t.appendBE16(destinationPort)
        t.appendBE32(sequence)
        t.appendBE32(acknowledgment)
        t.append(UInt8((20 + options.count) / 4) << 4)
        t.append(flags.rawValue)
        t.appendBE16(window)
        t.appendBE16(0)  // checksum
        t.appendBE16(0)  // urgent
        t.append(contentsOf: options)
        t.append(contentsOf: payload)
        let ph = Checksum.pseudoHeaderSum(src: source.value, dst: destination.value, proto: IPProtocol.tcp, length: UInt16(t.count))
        let c = t.withUnsafeBytes { Checksum.fold(Checksum.sum($0, initial: ph)) }
        t.setBE16(16, c)
        return t
    }

    public static func tcp(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16,
                           sequence: UInt32 = 0, acknowledgment: UInt32 = 0, flags: TCPFlags,
                           window: UInt16 = 64240, options: [UInt8] = [], payload: [UInt8] = [],
                           ttl: UInt8 = 64, identification: UInt16 = 0) -> [UInt8] {
        let seg = tcpSegment(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                             sequence: sequence, acknowledgment: acknowledgment, flags: flags, window: window,
                             options: options, payload: payload)
        return ipv4(source: source, destination: destination, proto: IPProtocol.tcp, payload: seg, ttl: ttl, identification: identification)
    }

    public static func udp(source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16,
                           payload: [UInt8], ttl: UInt8 = 64, identification: UInt16 = 0, checksum: Bool = true) -> [UInt8] {
        var u: [UInt8] = []
        u.appendBE16(sourcePort)
        u.appendBE16(destinationPort)
        u.appendBE16(UInt16(8 + payload.count))
        u.appendBE16(0)
        u.append(contentsOf: payload)
        if checksum {
            let ph = Checksum.pseudoHeaderSum(src: source.value, dst: destination.value, proto: IPProtocol.udp, length: UInt16(u.count))
            var c = u.withUnsafeBytes { Checksum.fold(Checksum.sum($0, initial: ph)) }
            if c == 0 { c = 0xFFFF }  // RFC 768: a computed zero is sent as all ones
            u.setBE16(6, c)
        }
        return ipv4(source: source, destination: destination, proto: IPProtocol.udp, payload: u, ttl: ttl,
                    identification: identification, dontFragment: false)
    }

    public static func icmpMessage(type: UInt8, code: UInt8, rest: UInt32, body: [UInt8]) -> [UInt8] {
        var m: [UInt8] = [type, code, 0, 0]
        m.appendBE32(rest)
        m.append(contentsOf: body)
        let c = m.withUnsafeBytes { Checksum.compute($0) }
        m.setBE16(2, c)
        return m
    }

    public static func icmpEcho(source: IPv4Address, destination: IPv4Address, request: Bool, identifier: UInt16,
                                sequence: UInt16, payload: [UInt8] = Array(repeating: 0x61, count: 32),
                                ttl: UInt8 = 64, identification: UInt16 = 0) -> [UInt8] {
        let m = icmpMessage(type: request ? ICMPType.echoRequest : ICMPType.echoReply, code: 0,
                            rest: UInt32(identifier) << 16 | UInt32(sequence), body: payload)
        return ipv4(source: source, destination: destination, proto: IPProtocol.icmp, payload: m, ttl: ttl, identification: identification)
    }

    /// An ICMP error quoting `original` (its IP header and first 8 bytes of payload, as the
    /// kernel's icmp_send quotes at least).
    public static func icmpError(source: IPv4Address, destination: IPv4Address, type: UInt8, code: UInt8,
                                 quoting original: [UInt8], quoteLength: Int? = nil, ttl: UInt8 = 64) -> [UInt8] {
        let hlen = Int(original[0] & 0x0F) * 4
        let n = min(original.count, quoteLength ?? (hlen + 8))
        let m = icmpMessage(type: type, code: code, rest: 0, body: Array(original[0 ..< n]))
        return ipv4(source: source, destination: destination, proto: IPProtocol.icmp, payload: m, ttl: ttl, dontFragment: false)
    }

    /// Ethernet II framing.
    public static func ethernet(destination: [UInt8], source: [UInt8], etherType: UInt16 = EtherType.ipv4,
                                vlanTags: [UInt16] = [], payload: [UInt8]) -> [UInt8] {
        precondition(destination.count == 6 && source.count == 6)
        var f = destination + source
        for vid in vlanTags {
            f.appendBE16(EtherType.vlan)
            f.appendBE16(vid & 0x0FFF)
        }
        f.appendBE16(etherType)
        f.append(contentsOf: payload)
        return f
    }
}

import Wire

/// A packet described in words for `sluice trace`:
/// `tcp 198.51.100.7:40000 > 203.0.113.1:8080 in eth0 flags S mark 0x1`.
struct PacketSpec {
    var proto: UInt8
    var source: IPv4Address
    var destination: IPv4Address
    var sourcePort: UInt16 = 0
    var destinationPort: UInt16 = 0
    /// nil: locally generated (`out`).
    var interface: String?
    var flags: TCPFlags = [.syn]
    var mark: UInt32 = 0
    var ttl: UInt8 = 64
    var payload = 0
    var icmpType: UInt8 = 8
    var icmpCode: UInt8 = 0

    struct ParseError: Error, CustomStringConvertible { var description: String }

    static func parse(_ text: String) throws -> PacketSpec {
        let w = text.split(separator: " ").map(String.init)
        guard w.count >= 4, w[2] == ">" else { throw ParseError(description: "expected 'PROTO SRC[:PORT] > DST[:PORT] in IFACE|out ...', got '\(text)'") }
        let proto: UInt8
        switch w[0].lowercased() {
        case "tcp": proto = IPProtocol.tcp
        case "udp": proto = IPProtocol.udp
        case "icmp": proto = IPProtocol.icmp
        default:
            guard let n = UInt8(w[0]) else { throw ParseError(description: "unknown protocol '\(w[0])'") }
            proto = n
        }
        func endpoint(_ s: String) throws -> (IPv4Address, UInt16) {
            let parts = s.split(separator: ":")
            guard let a = IPv4Address(parts[0]) else { throw ParseError(description: "bad address '\(s)'") }
            if parts.count == 2 {
                guard let p = UInt16(parts[1]) else { throw ParseError(description: "bad port in '\(s)'") }
                return (a, p)
            }
            return (a, 0)
        }
        let (src, sp) = try endpoint(w[1])
        let (dst, dp) = try endpoint(w[3])
        var spec = PacketSpec(proto: proto, source: src, destination: dst, sourcePort: sp, destinationPort: dp)
        if proto != IPProtocol.tcp { spec.flags = [] }
        var i = 4
        var sawDirection = false
        func value() throws -> String {
            guard i + 1 < w.count else { throw ParseError(description: "'\(w[i])' needs a value") }
            i += 1
            return w[i]
        }
        while i < w.count {
            switch w[i] {
            case "in": spec.interface = try value(); sawDirection = true
            case "out", "local": spec.interface = nil; sawDirection = true
            case "flags":
                let v = try value()
                var f: TCPFlags = []
                let names: [String: TCPFlags] = ["S": .syn, "A": .ack, ".": .ack, "F": .fin, "R": .rst, "P": .psh, "U": .urg, "E": .ece, "W": .cwr,
                                                 "SYN": .syn, "ACK": .ack, "FIN": .fin, "RST": .rst, "PSH": .psh, "URG": .urg]
                if v.contains(",") || v.count > 3 && names[v.uppercased()] != nil {
                    for n in v.split(separator: ",") {
                        guard let b = names[n.uppercased()] else { throw ParseError(description: "unknown flag '\(n)'") }
                        f.insert(b)
                    }
                } else {
                    for ch in v {
                        guard let b = names[String(ch).uppercased()] else { throw ParseError(description: "unknown flag '\(ch)'") }
                        f.insert(b)
                    }
                }
                spec.flags = f
            case "mark":
                let v = try value()
                guard let n = v.hasPrefix("0x") ? UInt32(v.dropFirst(2), radix: 16) : UInt32(v) else { throw ParseError(description: "bad mark '\(v)'") }
                spec.mark = n
            case "ttl":
                let v = try value()
                guard let n = UInt8(v) else { throw ParseError(description: "bad ttl '\(v)'") }
                spec.ttl = n
            case "len":
                let v = try value()
                guard let n = Int(v), n >= 0, n <= 1400 else { throw ParseError(description: "bad len '\(v)' (0-1400)") }
                spec.payload = n
            case "type":
                let v = try value()
                guard let n = UInt8(v) else { throw ParseError(description: "bad type '\(v)'") }
                spec.icmpType = n
            case "code":
                let v = try value()
                guard let n = UInt8(v) else { throw ParseError(description: "bad code '\(v)'") }
                spec.icmpCode = n
            default:
                throw ParseError(description: "unknown word '\(w[i])'")
            }
            i += 1
        }
        guard sawDirection else { throw ParseError(description: "say where the packet comes from: 'in IFACE' or 'out' (locally generated)") }
        return spec
    }

    func build() -> [UInt8] {
        let body = [UInt8](repeating: 0x78, count: payload)
        switch proto {
        case IPProtocol.tcp:
            return PacketBuilder.tcp(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort,
                                     sequence: 1000, acknowledgment: flags.contains(.ack) ? 2000 : 0, flags: flags, payload: body, ttl: ttl)
        case IPProtocol.udp:
            return PacketBuilder.udp(source: source, destination: destination, sourcePort: sourcePort, destinationPort: destinationPort, payload: body, ttl: ttl)
        case IPProtocol.icmp:
            let m = PacketBuilder.icmpMessage(type: icmpType, code: icmpCode, rest: 1 << 16 | 1, body: body)
            return PacketBuilder.ipv4(source: source, destination: destination, proto: proto, payload: m, ttl: ttl)
        default:
            return PacketBuilder.ipv4(source: source, destination: destination, proto: proto, payload: body, ttl: ttl)
        }
    }
}

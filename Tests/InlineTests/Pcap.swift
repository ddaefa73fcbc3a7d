import Foundation

/// An IPv4 packet from a tcpdump capture (Ethernet link type), with the fields the COPY
/// scenario compares.
struct CapturedIPv4: CustomStringConvertible {
    var bytes: [UInt8]
    var ihl: Int { Int(bytes[0] & 15) * 4 }
    var totalLength: Int { Int(bytes[2]) << 8 | Int(bytes[3]) }
    var id: Int { Int(bytes[4]) << 8 | Int(bytes[5]) }
    var dontFragment: Bool { bytes[6] & 0x40 != 0 }
    var ttl: Int { Int(bytes[8]) }
    var proto: Int { Int(bytes[9]) }
    var src: String { bytes[12 ..< 16].map(String.init).joined(separator: ".") }
    var dst: String { bytes[16 ..< 20].map(String.init).joined(separator: ".") }
    /// The transport header and payload, byte for byte (ports, sequence numbers, checksum, data).
    var l4: [UInt8] { Array(bytes[ihl ..< min(bytes.count, totalLength)]) }
    var srcPort: Int { l4.count >= 4 ? Int(l4[0]) << 8 | Int(l4[1]) : 0 }
    var dstPort: Int { l4.count >= 4 ? Int(l4[2]) << 8 | Int(l4[3]) : 0 }
    var tcpFlags: Int { proto == 6 && l4.count >= 14 ? Int(l4[13]) : 0 }

    /// What must be equal between an original and its copy: addresses, protocol, IP id and the
    /// whole transport segment. TTL, DF and the header checksum may differ (the kernel's TEE
    /// decrements the TTL of a clone taken in PREROUTING and sets DF).
    struct Key: Hashable { var src: String; var dst: String; var proto: Int; var id: Int; var l4: [UInt8] }
    var key: Key { Key(src: src, dst: dst, proto: proto, id: id, l4: l4) }

    var description: String {
        "\(src):\(srcPort) > \(dst):\(dstPort) proto \(proto) id \(id) ttl \(ttl) df \(dontFragment) flags 0x\(String(tcpFlags, radix: 16)) len \(totalLength)"
    }
}

/// The IPv4 packets of a classic pcap file (little- or big-endian, Ethernet or Linux cooked).
func readPcapIPv4(_ path: String) throws -> [CapturedIPv4] {
    guard let data = FileManager.default.contents(atPath: path) else { throw InlineError("no capture \(path)") }
    let b = [UInt8](data)
    guard b.count >= 24 else { return [] }
    let magicLE = b[0] == 0xd4 && b[1] == 0xc3 && b[2] == 0xb2 && b[3] == 0xa1 || b[0] == 0x4d && b[1] == 0x3c && b[2] == 0xb2 && b[3] == 0xa1
    func u32(_ i: Int) -> Int {
        magicLE ? Int(b[i]) | Int(b[i + 1]) << 8 | Int(b[i + 2]) << 16 | Int(b[i + 3]) << 24
                : Int(b[i + 3]) | Int(b[i + 2]) << 8 | Int(b[i + 1]) << 16 | Int(b[i]) << 24
    }
    let linkType = u32(20)
    var out: [CapturedIPv4] = []
    var off = 24
    while off + 16 <= b.count {
        let caplen = u32(off + 8)
        guard off + 16 + caplen <= b.count else { break }
        let frame = Array(b[off + 16 ..< off + 16 + caplen])
        off += 16 + caplen
        var ipStart: Int? = nil
        switch linkType {
        case 1:  // Ethernet, maybe one 802.1Q tag
            if frame.count >= 14 {
                let et = Int(frame[12]) << 8 | Int(frame[13])
                if et == 0x0800 { ipStart = 14 } else if et == 0x8100, frame.count >= 18, frame[16] == 0x08, frame[17] == 0 { ipStart = 18 }
            }
        case 113:  // Linux cooked
            if frame.count >= 16, frame[14] == 0x08, frame[15] == 0 { ipStart = 16 }
        case 101, 228:  // raw IPv4
            ipStart = 0
        default: break
        }
        guard let s = ipStart, frame.count >= s + 20, frame[s] >> 4 == 4 else { continue }
        let p = CapturedIPv4(bytes: Array(frame[s...]))
        if p.bytes.count >= p.ihl, p.bytes.count >= p.totalLength { out.append(p) }
    }
    return out
}

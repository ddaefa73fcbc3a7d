import Rules
import Wire

/// Which end of a tuple a NAT binding rewrites.
enum NATManip: UInt8, Sendable { case source, destination }

/// Header rewrites for NAT: L3 address and L4 port (or ICMP query id), with RFC 1624 updates
/// of the IPv4 header checksum and the TCP/UDP checksum (which covers the pseudo-header).
enum NATRewrite {
    /// Rewrites the source or destination address and port of the IPv4 packet at `l3` in place.
    /// `l4Present`: the L4 header is in the bytes (not a later fragment).
    static func apply(_ f: UnsafeMutableRawBufferPointer, l3: Int, l4: Int, capturedEnd: Int, proto: UInt8, l4Present: Bool,
                      manip: NATManip, address: UInt32, port: UInt16) {
        let addrOff = l3 + (manip == .source ? 12 : 16)
        let oldAddr = f.be32(addrOff)
        if oldAddr != address {
            f.setBE16(l3 + 10, Checksum.update(f.be16(l3 + 10), old: oldAddr, new: address))
            f.setBE32(addrOff, address)
        }
        guard l4Present else { return }
        switch proto {
        case IPProtocol.tcp:
            guard l4 + 18 <= capturedEnd else { return }
            let portOff = l4 + (manip == .source ? 0 : 2)
            let oldPort = f.be16(portOff)
            var c = Checksum.update(f.be16(l4 + 16), old: oldAddr, new: address)
            c = Checksum.update(c, old: oldPort, new: port)
            f.setBE16(l4 + 16, c)
            f.setBE16(portOff, port)
        case IPProtocol.udp:
            guard l4 + 8 <= capturedEnd else { return }
            let portOff = l4 + (manip == .source ? 0 : 2)
            let oldPort = f.be16(portOff)
            let old = f.be16(l4 + 6)
            if old != 0 {  // a zero UDP checksum means "none" and stays zero
                var c = Checksum.update(old, old: oldAddr, new: address)
                c = Checksum.update(c, old: oldPort, new: port)
                f.setBE16(l4 + 6, c == 0 ? 0xFFFF : c)
            }
            f.setBE16(portOff, port)
        case IPProtocol.icmp:
            // Queries carry the identifier conntrack keys on; nf_nat_icmp_manip_pkt sets it from the
            // target tuple for either manip type.
            guard l4 + 8 <= capturedEnd else { return }
            let type = f[l4]
            guard ICMPType.isQuery(type) else { return }
            let oldID = f.be16(l4 + 4)
            f.setBE16(l4 + 2, Checksum.update(f.be16(l4 + 2), old: oldID, new: port))
            f.setBE16(l4 + 4, port)
        default:
            break
        }
    }

    /// An ICMP error about a NATed connection: the quoted datagram is rewritten as its
    /// connection's binding says (nf_nat_icmp_reply_translation), and the ICMP checksum is
    /// recomputed over the message (the quote may be cut, so no incremental form is safe).
    /// `quoteManip`/`quoteAddress`/`quotePort` describe the rewrite of the quoted packet's side.
    static func applyToQuote(_ f: UnsafeMutableRawBufferPointer, l4: Int, capturedEnd: Int, manip: NATManip, address: UInt32, port: UInt16) {
        let q = l4 + 8
        guard q + 20 <= capturedEnd else { return }
        let qhl = Int(f[q] & 0x0F) * 4
        guard q + qhl + 8 <= capturedEnd else { return }
        let qproto = f[q + 9]
        apply(f, l3: q, l4: q + qhl, capturedEnd: capturedEnd, proto: qproto, l4Present: true, manip: manip, address: address, port: port)
        f.setBE16(l4 + 2, 0)
        f.setBE16(l4 + 2, Checksum.compute(UnsafeRawBufferPointer(rebasing: f[l4 ..< capturedEnd])))
    }
}

/// Port choice for SNAT/MASQUERADE/DNAT ranges, as nf_nat_l4proto_unique_tuple does in spirit:
/// keep the port when the resulting tuple is free and in range; otherwise try ports of the range
/// in order from a starting offset, a bounded number of times. (The kernel starts from a
/// hash-derived offset; Sluice starts at the original port so replays are deterministic.)
enum PortChooser {
    /// The kernel's default source-port ranges when none is given: privileged ports stay
    /// privileged (1-511, 600-1023), others go to 1024-65535.
    static func defaultRange(for port: UInt16) -> ClosedRange<UInt16> {
        if port < 512 { return 1 ... 511 }
        if port < 1024 { return 600 ... 1023 }
        return 1024 ... 65535
    }

    static let maxTries = 128

    /// Returns a port in `range` for which `free(port)` holds, preferring `original`.
    static func choose(original: UInt16, range: ClosedRange<UInt16>, free: (UInt16) -> Bool) -> UInt16? {
        if range.contains(original) && free(original) { return original }
        let size = Int(range.upperBound) - Int(range.lowerBound) + 1
        let start = range.contains(original) ? Int(original) - Int(range.lowerBound) : Int(original) % size
        for k in 1 ... min(maxTries, size) {
            let p = UInt16(Int(range.lowerBound) + (start + k) % size)
            if free(p) { return p }
        }
        return nil
    }
}

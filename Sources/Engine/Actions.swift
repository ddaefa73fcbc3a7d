import Classifier
import NetModel
import Rules
import Wire

/// A non-jump target, compiled. REJECT ends the chain; the others change the packet or log and
/// let it continue, as in the kernel (XT_CONTINUE).
enum TargetAction: Sendable {
    case reject(RejectWith)
    case log(LogOptions)
    case mark(value: UInt32, mask: UInt32)
    case ttl(TTLOp)
    case dscp(UInt8)
    case tcpmss(TCPMSSOp)
    /// CHECKSUM --checksum-fill acts only on CHECKSUM_PARTIAL packets (locally generated with
    /// offload); replayed and queued packets carry full checksums, so it changes nothing.
    case checksumFill
    case notrack
    /// VNS3 COPY: mirror to a next hop (the kernel's TEE).
    case copy(to: UInt32)
    /// VNS3 LOOKUP: route this packet by route table `table`.
    case lookup(table: UInt32)
    case connmark(ConnmarkOp)
    /// DNAT, SNAT, MASQUERADE, REDIRECT, NETMAP: set the NEW connection's binding and stop.
    case nat(NATAction)
}

/// In-place header rewrites with RFC 1624 checksum updates.
enum Rewrite {
    /// Sets the IPv4 TTL at `l3`, updating the header checksum.
    static func setTTL(_ f: UnsafeMutableRawBufferPointer, l3: Int, _ ttl: UInt8) {
        let old = f.be16(l3 + 8)
        let new = UInt16(ttl) << 8 | (old & 0xFF)
        f.setBE16(l3 + 10, Checksum.update(f.be16(l3 + 10), old: old, new: new))
        f.setBE16(l3 + 8, new)
    }

    static func setTOS(_ f: UnsafeMutableRawBufferPointer, l3: Int, _ tos: UInt8) {
        let old = f.be16(l3)
        let new = (old & 0xFF00) | UInt16(tos)
        f.setBE16(l3 + 10, Checksum.update(f.be16(l3 + 10), old: old, new: new))
        f.setBE16(l3, new)
    }

    /// TCPMSS on a SYN: lowers an MSS option above `mss` (the option must be inside the
    /// captured header). Returns true when the packet changed.
    static func clampMSS(_ f: UnsafeMutableRawBufferPointer, l4: Int, capturedEnd: Int, mss: UInt16) -> Bool {
        guard l4 + 20 <= capturedEnd else { return false }
        let doff = Int(f[l4 + 12] >> 4) * 4
        guard doff > 20, l4 + doff <= capturedEnd else { return false }
        var i = l4 + 20
        while i < l4 + doff {
            let kind = f[i]
            if kind == 0 { break }
            if kind == 1 { i += 1; continue }
            guard i + 1 < l4 + doff else { break }
            let len = Int(f[i + 1])
            guard len >= 2, i + len <= l4 + doff else { break }
            if kind == 2 && len == 4 {
                let old = f.be16(i + 2)
                guard old > mss else { return false }
                f.setBE16(l4 + 16, Checksum.update(f.be16(l4 + 16), old: old, new: mss))
                f.setBE16(i + 2, mss)
                return true
            }
            i += len
        }
        return false
    }
}

/// Packets the box itself sends in answer: REJECT's ICMP errors and TCP resets, ICMP time
/// exceeded. Built as the kernel builds them (nf_reject_ipv4.c, icmp_send).
enum Replies {
    /// icmp_send: IPv4 header (TOS = original TOS bits | 0xC0, TTL 64, no DF, ID 0), ICMP
    /// header, and as much of the original datagram as fits in 576 bytes.
    static func icmpError(original: UnsafeRawBufferPointer, source: UInt32, type: UInt8, code: UInt8, into out: inout [UInt8]) {
        out.removeAll(keepingCapacity: true)
        let quote = min(original.count, 576 - 20 - 8)
        let total = 20 + 8 + quote
        out.append(0x45)
        out.append((original[1] & 0x1E) | 0xC0)
        out.appendBE16(UInt16(total))
        out.appendBE16(0)
        out.appendBE16(0)
        out.append(64)
        out.append(IPProtocol.icmp)
        out.appendBE16(0)
        out.appendBE32(source)
        out.appendBE32(original.be32(12))
        out.append(type); out.append(code); out.appendBE16(0); out.appendBE32(0)
        out.append(contentsOf: original[0 ..< quote])
        out.withUnsafeMutableBytes { m in
            m.setBE16(10, Checksum.compute(UnsafeRawBufferPointer(rebasing: m[0 ..< 20])))
            m.setBE16(22, Checksum.compute(UnsafeRawBufferPointer(rebasing: m[20 ..< total])))
        }
    }

    /// nf_send_reset: addresses and ports swapped; with ACK set in the original, seq = its ack
    /// and no ACK; otherwise seq 0, ACK set, ack = seq + SYN + FIN + payload length. DF, ID 0,
    /// TOS 0, TTL 64, window 0. Returns false when no reset is sent (the original is a RST).
    static func tcpReset(original ip: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
        let hl = Int(ip[0] & 0x0F) * 4
        guard ip.count >= hl + 20 else { return false }
        let th = hl
        let flags = ip[th + 13]
        if flags & 0x04 != 0 { return false }
        let doff = Int(ip[th + 12] >> 4) * 4
        let payload = Int(ip.be16(2)) - hl - doff
        out.removeAll(keepingCapacity: true)
        out.append(0x45); out.append(0)
        out.appendBE16(40)
        out.appendBE16(0)
        out.appendBE16(0x4000)
        out.append(64); out.append(IPProtocol.tcp)
        out.appendBE16(0)
        out.appendBE32(ip.be32(16)); out.appendBE32(ip.be32(12))
        out.appendBE16(ip.be16(th + 2)); out.appendBE16(ip.be16(th))
        if flags & 0x10 != 0 {
            out.appendBE32(ip.be32(th + 8)); out.appendBE32(0)
            out.append(5 << 4); out.append(0x04)
        } else {
            let seq = ip.be32(th + 4) &+ UInt32(flags & 0x02 != 0 ? 1 : 0) &+ UInt32(flags & 0x01 != 0 ? 1 : 0) &+ UInt32(max(0, payload))
            out.appendBE32(0); out.appendBE32(seq)
            out.append(5 << 4); out.append(0x14)
        }
        out.appendBE16(0); out.appendBE16(0); out.appendBE16(0)
        out.withUnsafeMutableBytes { m in
            m.setBE16(10, Checksum.compute(UnsafeRawBufferPointer(rebasing: m[0 ..< 20])))
            let ph = Checksum.pseudoHeaderSum(src: m.be32(12), dst: m.be32(16), proto: IPProtocol.tcp, length: 20)
            m.setBE16(36, Checksum.fold(Checksum.sum(UnsafeRawBufferPointer(rebasing: m[20 ..< 40]), initial: ph)))
        }
        return true
    }
}

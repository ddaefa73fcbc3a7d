#if canImport(Glibc)
import Glibc
#endif
import CNetfilterQueue

/// How a queue is configured when it is bound.
public struct QueueConfig: Sendable {
    public var number: UInt16
    /// NFQNL_COPY_PACKET range: the whole packet (the engine rewrites headers and needs L4).
    public var copyRange: UInt32 = 0xFFFF
    /// NFQA_CFG_QUEUE_MAXLEN: packets the kernel holds for us before it drops (or fails open).
    public var maxLength: UInt32 = 8192
    /// SO_RCVBUFFORCE: room for bursts on the netlink socket.
    public var receiveBuffer: Int32 = 64 << 20
    /// NFQA_CFG_F_FAIL_OPEN: when the queue is full, the kernel accepts instead of dropping.
    public var failOpen = false
    /// NFQA_CFG_F_GSO: GSO super-packets (up to 64 KB) are queued whole, checksums not computed.
    public var gso = true
    /// Receive slots per recvmmsg.
    public var batch = 64

    public init(number: UInt16) { self.number = number }
}

/// One queued packet, pointing into the socket's receive slot (valid until the next receive).
public struct QueuedPacket {
    public var id: UInt32 = 0
    public var hook: UInt8 = 0
    public var payload: UnsafeMutableRawPointer? = nil
    public var length = 0
    /// Bytes usable from `payload` (the slot's end): room for a target that grows the packet.
    public var capacity = 0
    public var inIfindex: UInt32 = 0
    public var outIfindex: UInt32 = 0
    public var mark: UInt32 = 0
    /// NFQA_SKB_INFO flags: CSUMNOTREADY (1), GSO (2), CSUM_NOTVERIFIED (4).
    public var skbInfo: UInt32 = 0

    public init() {}
    public var checksumNotReady: Bool { skbInfo & 1 != 0 }
    public var isGSO: Bool { skbInfo & 2 != 0 }
    public var checksumNotVerified: Bool { skbInfo & 4 != 0 }
}

public enum Verdict: UInt32 {
    case drop = 0
    case accept = 1
}

/// Errors opening or configuring a queue.
public struct QueueError: Error, CustomStringConvertible {
    public let description: String
    init(_ what: String, errno e: Int32 = errno) { description = "\(what): \(String(cString: strerror(e)))" }
    init(message: String) { description = message }
}

/// A netlink socket bound to one NFQUEUE queue: batched receive (recvmmsg into preallocated
/// slots), attributes parsed in place, verdicts packed back to back into one send.
/// Allocation happens at open only; `receive` and the verdict writers allocate nothing.
public final class QueueSocket: @unchecked Sendable {
    public let config: QueueConfig
    let fd: Int32
    let slotSize: Int
    let rx: UnsafeMutableRawPointer
    let msgs: UnsafeMutablePointer<sluice_mmsghdr>
    let iovs: UnsafeMutablePointer<iovec>
    let tx: UnsafeMutableRawPointer
    let txCapacity: Int
    var txUsed = 0
    /// Counters (read by the owner thread; published by the runner).
    public private(set) var enobufs: UInt64 = 0
    public private(set) var netlinkErrors: UInt64 = 0
    public private(set) var truncated: UInt64 = 0
    public private(set) var receiveCalls: UInt64 = 0
    public private(set) var sendCalls: UInt64 = 0
    /// Packets that arrived before the bind was acknowledged: accepted unexamined.
    public private(set) var acceptedBeforeReady: UInt64 = 0

    static let subsysQueue: UInt16 = 3
    static let msgPacket: UInt16 = 0, msgVerdict: UInt16 = 1, msgConfig: UInt16 = 2, msgVerdictBatch: UInt16 = 3

    public init(_ config: QueueConfig) throws(QueueError) {
        self.config = config
        let s = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_NETFILTER)
        guard s >= 0 else { throw QueueError("socket(AF_NETLINK, NETLINK_NETFILTER)") }
        fd = s
        var addr = sockaddr_nl()
        addr.nl_family = sa_family_t(AF_NETLINK)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        guard bound == 0 else { let e = errno; close(s); throw QueueError("bind netlink socket", errno: e) }
        var rcv = config.receiveBuffer
        if setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, 4) != 0 { _ = setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcv, 4) }
        var snd: Int32 = 16 << 20
        if setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &snd, 4) != 0 { _ = setsockopt(s, SOL_SOCKET, SO_SNDBUF, &snd, 4) }
        var one: Int32 = 1
        _ = setsockopt(s, 270 /* SOL_NETLINK */, 5 /* NETLINK_NO_ENOBUFS */, &one, 4)
        // A receive timeout lets the worker see a stop request while the queue is idle.
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        _ = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        slotSize = Int(min(config.copyRange, 0xFFFF)) + 1024
        let b = max(1, config.batch)
        rx = UnsafeMutableRawPointer.allocate(byteCount: slotSize * b, alignment: 16)
        msgs = .allocate(capacity: b)
        iovs = .allocate(capacity: b)
        for i in 0 ..< b {
            iovs[i] = iovec(iov_base: rx + i * slotSize, iov_len: slotSize)
            var h = sluice_mmsghdr()
            h.msg_hdr.msg_iov = iovs + i
            h.msg_hdr.msg_iovlen = 1
            msgs[i] = h
        }
        txCapacity = 1 << 20
        tx = UnsafeMutableRawPointer.allocate(byteCount: txCapacity, alignment: 16)
        // On failure deinit runs (every property is set) and releases the socket and buffers.
        try configure()
    }

    deinit {
        close(fd)
        rx.deallocate(); msgs.deallocate(); iovs.deallocate(); tx.deallocate()
    }

    /// BIND + copy mode + max length + flags in one message with an ACK, so no packet is ever
    /// delivered with the default settings; the answer is read here (EBUSY/EPERM are fatal).
    func configure() throws(QueueError) {
        var buf = [UInt8](repeating: 0, count: 512)
        let ok: Bool = buf.withUnsafeMutableBytes { m in
            let nlh = nfq_nlmsg_put(m.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(NFQNL_MSG_CONFIG.rawValue), UInt32(config.number))!
            nfq_nlmsg_cfg_put_cmd(nlh, UInt16(AF_INET), UInt8(NFQNL_CFG_CMD_BIND.rawValue))
            nfq_nlmsg_cfg_put_params(nlh, UInt8(NFQNL_COPY_PACKET.rawValue), Int32(config.copyRange))
            nfq_nlmsg_cfg_put_qmaxlen(nlh, config.maxLength)
            var flags: UInt32 = 0
            if config.gso { flags |= UInt32(NFQA_CFG_F_GSO) }
            if config.failOpen { flags |= UInt32(NFQA_CFG_F_FAIL_OPEN) }
            mnl_attr_put_u32(nlh, UInt16(NFQA_CFG_FLAGS.rawValue), flags.bigEndian)
            mnl_attr_put_u32(nlh, UInt16(NFQA_CFG_MASK.rawValue), (UInt32(NFQA_CFG_F_GSO) | UInt32(NFQA_CFG_F_FAIL_OPEN)).bigEndian)
            nlh.pointee.nlmsg_flags |= UInt16(NLM_F_ACK)
            return send(fd, nlh, Int(nlh.pointee.nlmsg_len), 0) >= 0
        }
        guard ok else { throw QueueError("configure queue \(config.number)") }
        // Read until the ACK for the config (packets cannot arrive before it: the queue was
        // not bound until this message).
        var ack = [UInt8](repeating: 0, count: 8192)
        for _ in 0 ..< 50 {
            let n = ack.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw QueueError("read config answer of queue \(config.number)")
            }
            var off = 0
            while off + 16 <= n {
                let len = Int(ack.loadLE32(off))
                let type = ack.loadLE16(off + 4)
                if type == 2 /* NLMSG_ERROR */ {
                    let code = Int32(bitPattern: ack.loadLE32(off + 16))
                    if code == 0 { flush(); return }
                    let hint = -code == EBUSY ? " (is another program serving this queue?)" : -code == EPERM ? " (needs CAP_NET_ADMIN)" : ""
                    throw QueueError(message: "binding queue \(config.number): \(String(cString: strerror(-code)))\(hint)")
                }
                guard len >= 16, off + len <= n else { break }
                if type == Self.subsysQueue << 8 | Self.msgPacket {
                    // A packet overtook the ACK (the operator's rule was already there): it
                    // still gets its one verdict, as if Sluice were not running yet (bypass).
                    var p = QueuedPacket()
                    ack.withUnsafeMutableBytes { m in
                        let h = m.baseAddress! + off
                        if parsePacket(h, len: len, slotEnd: h + len, into: &p) { verdict(id: p.id, .accept) }
                    }
                    acceptedBeforeReady &+= 1
                }
                off += (len + 3) & ~3
            }
        }
        throw QueueError(message: "binding queue \(config.number): no answer from the kernel")
    }

    /// Unbinds the queue (the kernel drops nothing we still hold: call after the last verdicts).
    public func unbind() {
        var buf = [UInt8](repeating: 0, count: 256)
        buf.withUnsafeMutableBytes { m in
            let nlh = nfq_nlmsg_put(m.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(NFQNL_MSG_CONFIG.rawValue), UInt32(config.number))!
            nfq_nlmsg_cfg_put_cmd(nlh, UInt16(AF_INET), UInt8(NFQNL_CFG_CMD_UNBIND.rawValue))
            _ = send(fd, nlh, Int(nlh.pointee.nlmsg_len), 0)
        }
    }

    /// Receives up to `config.batch` netlink datagrams (waiting for the first, up to the
    /// socket's timeout unless `wait` is false) and parses every packet message into `out`.
    /// Returns the number of packets, 0 on timeout or when nothing is waiting.
    public func receive(into out: UnsafeMutablePointer<QueuedPacket>, capacity: Int, wait: Bool = true) -> Int {
        let b = Int32(max(1, config.batch))
        let n = sluice_recvmmsg(fd, msgs, UInt32(b), SLUICE_MSG_WAITFORONE | (wait ? 0 : Int32(MSG_DONTWAIT)))
        if n < 0 {
            if errno == ENOBUFS { enobufs &+= 1 }
            return 0
        }
        receiveCalls &+= 1
        var count = 0
        for i in 0 ..< Int(n) {
            let base = rx + i * slotSize
            var remaining = Int(msgs[i].msg_len)
            if msgs[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 { truncated &+= 1 }
            var off = 0
            let slotEnd = base + slotSize
            while remaining >= 16 {
                let h = base + off
                let len = Int(h.loadUnaligned(as: UInt32.self))
                guard len >= 16, len <= remaining else { break }
                let type = h.loadUnaligned(fromByteOffset: 4, as: UInt16.self)
                if type == Self.subsysQueue << 8 | Self.msgPacket {
                    if count < capacity, parsePacket(h, len: len, slotEnd: slotEnd, into: &out[count]) { count += 1 }
                } else if type == 2 /* NLMSG_ERROR */ {
                    if len >= 20 && h.loadUnaligned(fromByteOffset: 16, as: Int32.self) != 0 { netlinkErrors &+= 1 }
                }
                let step = (len + 3) & ~3
                off += step
                remaining -= step
            }
        }
        return count
    }

    @inline(__always)
    func parsePacket(_ h: UnsafeMutableRawPointer, len: Int, slotEnd: UnsafeMutableRawPointer, into p: inout QueuedPacket) -> Bool {
        p = QueuedPacket()
        var a = 20  // nlmsghdr + nfgenmsg
        var haveID = false
        while a + 4 <= len {
            let alen = Int(h.loadUnaligned(fromByteOffset: a, as: UInt16.self))
            let atype = h.loadUnaligned(fromByteOffset: a + 2, as: UInt16.self) & 0x3FFF
            guard alen >= 4, a + alen <= len else { break }
            let v = a + 4
            switch atype {
            case 1:  // NFQA_PACKET_HDR: be32 id, be16 hw proto, u8 hook
                p.id = UInt32(bigEndian: h.loadUnaligned(fromByteOffset: v, as: UInt32.self))
                p.hook = h.load(fromByteOffset: v + 6, as: UInt8.self)
                haveID = true
            case 3: p.mark = UInt32(bigEndian: h.loadUnaligned(fromByteOffset: v, as: UInt32.self))
            case 5: p.inIfindex = UInt32(bigEndian: h.loadUnaligned(fromByteOffset: v, as: UInt32.self))
            case 6: p.outIfindex = UInt32(bigEndian: h.loadUnaligned(fromByteOffset: v, as: UInt32.self))
            case 10:  // NFQA_PAYLOAD
                p.payload = h + v
                p.length = alen - 4
                p.capacity = min(slotEnd - (h + v), 0xFFFF)
            case 14: p.skbInfo = UInt32(bigEndian: h.loadUnaligned(fromByteOffset: v, as: UInt32.self))
            default: break
            }
            a += (alen + 3) & ~3
        }
        return haveID
    }

    // MARK: - Verdicts

    /// Appends a per-packet verdict (with a new mark and/or the rewritten packet) to the send
    /// buffer, flushing first when it would not fit.
    public func verdict(id: UInt32, _ v: Verdict, mark: UInt32? = nil, payload: UnsafeRawBufferPointer? = nil) {
        let payloadLen = payload?.count ?? 0
        let need = 20 + 12 + (mark == nil ? 0 : 8) + (payload == nil ? 0 : 4 + ((payloadLen + 3) & ~3))
        if txUsed + need > txCapacity { flush() }
        let h = tx + txUsed
        var o = 20
        o = putAttr(h, o, type: 2, length: 8) { p in  // NFQA_VERDICT_HDR: be32 verdict, be32 id
            p.storeBytes(of: v.rawValue.bigEndian, toByteOffset: 0, as: UInt32.self)
            p.storeBytes(of: id.bigEndian, toByteOffset: 4, as: UInt32.self)
        }
        if let mark {
            o = putAttr(h, o, type: 3, length: 4) { $0.storeBytes(of: mark.bigEndian, as: UInt32.self) }
        }
        if let payload, let src = payload.baseAddress {
            o = putAttr(h, o, type: 10, length: payloadLen) { $0.copyMemory(from: src, byteCount: payloadLen) }
        }
        putHeader(h, length: o, type: Self.msgVerdict)
        txUsed += (o + 3) & ~3
    }

    /// Appends NFQNL_MSG_VERDICT_BATCH: every packet still held with an id <= `id` gets `v`.
    /// Per-packet verdicts appended before it in the same send are applied first.
    public func batchVerdict(upTo id: UInt32, _ v: Verdict) {
        if txUsed + 32 > txCapacity { flush() }
        let h = tx + txUsed
        let o = putAttr(h, 20, type: 2, length: 8) { p in
            p.storeBytes(of: v.rawValue.bigEndian, toByteOffset: 0, as: UInt32.self)
            p.storeBytes(of: id.bigEndian, toByteOffset: 4, as: UInt32.self)
        }
        putHeader(h, length: o, type: Self.msgVerdictBatch)
        txUsed += o
    }

    /// Sends every verdict appended since the last flush in one send.
    public func flush() {
        guard txUsed > 0 else { return }
        while send(fd, tx, txUsed, 0) < 0 {
            if errno == EINTR { continue }
            netlinkErrors &+= 1
            break
        }
        sendCalls &+= 1
        txUsed = 0
    }

    @inline(__always)
    func putHeader(_ h: UnsafeMutableRawPointer, length: Int, type: UInt16) {
        h.storeBytes(of: UInt32(length), toByteOffset: 0, as: UInt32.self)
        h.storeBytes(of: Self.subsysQueue << 8 | type, toByteOffset: 4, as: UInt16.self)
        h.storeBytes(of: UInt16(1) /* NLM_F_REQUEST */, toByteOffset: 6, as: UInt16.self)
        h.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
        h.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
        // nfgenmsg: AF_UNSPEC, NFNETLINK_V0, queue number (big-endian)
        h.storeBytes(of: UInt8(0), toByteOffset: 16, as: UInt8.self)
        h.storeBytes(of: UInt8(0), toByteOffset: 17, as: UInt8.self)
        h.storeBytes(of: config.number.bigEndian, toByteOffset: 18, as: UInt16.self)
    }

    @inline(__always)
    func putAttr(_ h: UnsafeMutableRawPointer, _ o: Int, type: UInt16, length: Int, _ body: (UnsafeMutableRawPointer) -> Void) -> Int {
        h.storeBytes(of: UInt16(4 + length), toByteOffset: o, as: UInt16.self)
        h.storeBytes(of: type, toByteOffset: o + 2, as: UInt16.self)
        body(h + o + 4)
        let end = o + 4 + length
        let aligned = (end + 3) & ~3
        if aligned > end { (h + end).initializeMemory(as: UInt8.self, repeating: 0, count: aligned - end) }
        return aligned
    }
}

extension Array where Element == UInt8 {
    func loadLE32(_ o: Int) -> UInt32 { withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
    func loadLE16(_ o: Int) -> UInt16 { withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt16.self) } }
}

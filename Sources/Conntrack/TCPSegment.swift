import Wire

/// What the TCP tracker needs from a segment. Built from a `TCPView` (which parses the
/// options it needs, without allocating) or by hand in tests.
public struct TCPSegment: Equatable, Sendable {
    public var flags: UInt8
    public var seq: UInt32
    public var ack: UInt32
    public var window: UInt16
    /// Bytes after the TCP header.
    public var payloadLength: UInt32
    /// The header carried options (the kernel resets a side's scale/SACK flags only then).
    public var hasOptions: Bool
    /// Window scale option shift, or nil.
    public var windowScale: UInt8?
    public var sackPermitted: Bool
    /// Highest right edge among SACK blocks, if any.
    public var sackEdge: UInt32?

    public init(flags: TCPFlags, seq: UInt32 = 0, ack: UInt32 = 0, window: UInt16 = 65535,
                payloadLength: Int = 0, windowScale: UInt8? = nil, sackPermitted: Bool = false,
                sackEdge: UInt32? = nil) {
        self.flags = flags.rawValue; self.seq = seq; self.ack = ack; self.window = window
        self.payloadLength = UInt32(truncatingIfNeeded: payloadLength)
        self.windowScale = windowScale; self.sackPermitted = sackPermitted; self.sackEdge = sackEdge
        self.hasOptions = windowScale != nil || sackPermitted || sackEdge != nil
    }

    /// From a checked header view; `payloadLength` is the IP payload minus the TCP header.
    public init(_ v: TCPView, payloadLength: Int) {
        self.init(flags: v.flags, seq: v.sequence, ack: v.acknowledgment, window: v.window,
                  payloadLength: payloadLength)
        let o = v.options
        hasOptions = o.count > 0
        // Options walk as the kernel's tcp_options/tcp_sack: stop at EOL or anything malformed.
        var p = 0
        while p < o.count {
            let kind = o[p]
            if kind == 0 { break }
            if kind == 1 { p += 1; continue }
            guard p + 1 < o.count else { break }
            let len = Int(o[p + 1])
            guard len >= 2, p + len <= o.count else { break }
            switch (kind, len) {
            case (3, 3): windowScale = min(o[p + 2], 14)
            case (4, 2): sackPermitted = true
            case (5, _) where len >= 10 && (len - 2) % 8 == 0:
                var b = p + 2
                while b + 8 <= p + len {
                    let right = UInt32(o[b + 4]) << 24 | UInt32(o[b + 5]) << 16 | UInt32(o[b + 6]) << 8 | UInt32(o[b + 7])
                    if let e = sackEdge { if Int32(bitPattern: right &- e) > 0 { sackEdge = right } } else { sackEdge = right }
                    b += 8
                }
            default: break
            }
            p += len
        }
    }

    @inlinable var syn: Bool { flags & TCPFlags.syn.rawValue != 0 }
    @inlinable var fin: Bool { flags & TCPFlags.fin.rawValue != 0 }
    @inlinable var rst: Bool { flags & TCPFlags.rst.rawValue != 0 }
    @inlinable var hasAck: Bool { flags & TCPFlags.ack.rawValue != 0 }

    /// seq + len (+1 for SYN, +1 for FIN): the kernel's segment_seq_plus_len.
    @inlinable var end: UInt32 {
        seq &+ payloadLength &+ (syn ? 1 : 0) &+ (fin ? 1 : 0)
    }
}

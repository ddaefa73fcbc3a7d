import Classifier
import Wire

// Entry points for `sluice bench --stage classify`: one hook's chains, for a packet parsed
// beforehand, without parsing, conntrack lookup, routing or NAT around them.

extension Engine {
    /// Runs the chains registered at `hook` (every table that has that built-in chain, in
    /// priority order, with user chains, counters and targets as in `process`) for a packet
    /// parsed beforehand into `p`. Returns true when the packet goes on (every chain accepted
    /// or fell through to an ACCEPT policy), false when it was dropped or rejected.
    ///
    /// Conntrack is not consulted: a packet arrives at `hook` with no connection looked up, so
    /// state matches see what an untracked-by-lookup packet sees. Targets may rewrite `frame`
    /// in place (TTL, DSCP, TCPMSS), as in `process`.
    public mutating func classify(hook: Hook, frame: UnsafeMutableRawBufferPointer, parsed p: ParsedPacket,
                                  inInterface: Int16, outInterface: Int16, timestampNanos: Int64 = 0,
                                  trace: inout HitTrace, emitted: inout Emitted) -> Bool {
        trace.clear()
        emitted.clear()
        guard p.kind == .ipv4 else { return true }
        var f = PacketFields(p, inInterface: inInterface, outInterface: outInterface)
        let l3 = Int(p.l3Offset)
        var ctx = PacketContext(frame: frame, l3: l3, bytes: UInt64(p.ipTotalLength), now: timestampNanos, l4: Int(p.l4Offset),
                                capturedEnd: l3 + Int(p.ipCapturedLength))
        ctx.capacity = frame.count
        var d = Decision()
        return runHook(hook, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted)
    }

    /// Rules in every table (what `sluice check` counts).
    public var ruleCount: Int { tables.reduce(0) { $0 + $1.ruleCount } }
}

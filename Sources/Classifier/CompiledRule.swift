import Rules
import Wire

/// The header fields a rule can look at, gathered once per packet and updated when a target
/// rewrites them (MARK, TTL, DSCP). Plain value; no references.
public struct PacketFields: Sendable {
    public var source: UInt32 = 0
    public var destination: UInt32 = 0
    /// Both ports in one field, the source port in the high 16 bits (`sourcePort`,
    /// `destinationPort`). A lookup reads them with one 4-byte load (`CutTree.keys`); as two
    /// 2-byte fields written apart, the compiler's 4-byte load of the destination port (and the
    /// next field) waited for both stores to leave the store buffer: 13-15 ns more per cut-tree
    /// lookup when the fields had been built just before it (docs/classifier.md, "Ninth pass").
    public var ports: UInt32 = 0
    public var proto: UInt8 = 0
    /// Interface indices (see `InterfaceTable`); -1 when the hook has none (no input
    /// interface on OUTPUT, no output interface on PREROUTING/INPUT).
    public var inInterface: Int16 = -1
    public var outInterface: Int16 = -1
    public var hasL4: Bool = false
    public var l4Truncated: Bool = false
    public var laterFragment: Bool = false
    public var mark: UInt32 = 0
    public var ttl: UInt8 = 0
    public var tos: UInt8 = 0
    public var length: UInt16 = 0
    public var tcpFlags: UInt8 = 0
    public var icmpType: UInt8 = 0
    public var icmpCode: UInt8 = 0
    /// Link layer: source MAC (48 bits) when the packet came with an Ethernet header.
    public var hasMAC: Bool = false
    public var sourceMAC: UInt64 = 0
    /// 0 unicast, 1 broadcast, 2 multicast (xt_pkttype's view).
    public var packetType: UInt8 = 0

    public init() {}

    @inlinable
    public var sourcePort: UInt16 {
        get { UInt16(truncatingIfNeeded: ports &>> 16) }
        set { ports = ports & 0xffff | UInt32(newValue) &<< 16 }
    }

    @inlinable
    public var destinationPort: UInt16 {
        get { UInt16(truncatingIfNeeded: ports) }
        set { ports = ports & 0xffff_0000 | UInt32(newValue) }
    }

    @inlinable
    public init(_ p: ParsedPacket, inInterface: Int16, outInterface: Int16) {
        source = p.source; destination = p.destination; proto = p.proto
        ports = UInt32(p.sourcePort) &<< 16 | UInt32(p.destinationPort)
        self.inInterface = inInterface; self.outInterface = outInterface
        hasL4 = p.hasL4; l4Truncated = p.l4Truncated; laterFragment = p.isLaterFragment
        ttl = p.ttl; tos = p.tos; length = p.ipTotalLength
        tcpFlags = p.tcpFlags.rawValue; icmpType = p.icmpType; icmpCode = p.icmpCode
    }
}

/// What a rule does when it matches, with chain indices resolved. `action` indexes the
/// engine's table of non-jump targets (REJECT, LOG, MARK, ...).
public enum CompiledTarget: Equatable, Sendable {
    case none, accept, drop, `return`
    case jump(Int32)
    case goto(Int32)
    case action(Int32)
}

/// One rule flattened into plain fields: no optionals, no strings, no references; matching
/// the header part is a handful of compares. Interface matches are bit masks over the
/// interface table. Matches that need more than header fields (marks, rates, sets, ...) are
/// `residualCount` entries starting at `residualStart` in the engine's residual table, checked
/// in rule order after the header part matched.
public struct CompiledRule: Sendable {
    public var srcNet: UInt32 = 0, srcMask: UInt32 = 0, srcInvert = false
    public var dstNet: UInt32 = 0, dstMask: UInt32 = 0, dstInvert = false
    /// 0 = any protocol.
    public var proto: UInt8 = 0, protoInvert = false
    public var inMask: UInt64 = ~0, inInvert = false, inAny = true
    public var outMask: UInt64 = ~0, outInvert = false, outAny = true
    /// `-f`: 0 not given, 1 later fragments only, 2 (`! -f`) no later fragments.
    public var fragment: UInt8 = 0
    /// Port matches (tcp/udp module); `portsUsed` false when the rule has none.
    public var portsUsed = false
    public var sportLo: UInt16 = 0, sportHi: UInt16 = 65535, sportInvert = false
    public var dportLo: UInt16 = 0, dportHi: UInt16 = 65535, dportInvert = false
    public var residualStart: Int32 = 0
    public var residualCount: Int16 = 0
    public var target: CompiledTarget = .none
    /// Index into the engine's per-rule counters.
    public var id: Int32 = 0

    public init() {}
}

public enum MatchResult: UInt8, Sendable {
    case noMatch, match
    /// The kernel's hotdrop: a match could not read the header it needs (tcp/udp match on a
    /// first fragment too short to hold the ports); the packet is dropped at once.
    case hotdrop
}

extension CompiledRule {
    /// The header part of the rule (everything but the residual matches).
    @inlinable
    public func matches(_ f: PacketFields) -> MatchResult {
        if ((f.source & srcMask) == srcNet) == srcInvert { return .noMatch }
        if ((f.destination & dstMask) == dstNet) == dstInvert { return .noMatch }
        if proto != 0 && (f.proto == proto) == protoInvert { return .noMatch }
        if !inAny {
            let hit = f.inInterface >= 0 && f.inInterface < 64 && (inMask >> UInt64(f.inInterface)) & 1 == 1
            if hit == inInvert { return .noMatch }
        }
        if !outAny {
            let hit = f.outInterface >= 0 && f.outInterface < 64 && (outMask >> UInt64(f.outInterface)) & 1 == 1
            if hit == outInvert { return .noMatch }
        }
        if fragment != 0 && f.laterFragment != (fragment == 1) { return .noMatch }
        if portsUsed {
            // xt_tcpudp: later fragments never match; a first fragment without the ports hotdrops.
            if f.laterFragment { return .noMatch }
            if !f.hasL4 { return f.l4Truncated ? .hotdrop : .noMatch }
            if (f.sourcePort >= sportLo && f.sourcePort <= sportHi) == sportInvert { return .noMatch }
            if (f.destinationPort >= dportLo && f.destinationPort <= dportHi) == dportInvert { return .noMatch }
        }
        return .match
    }
}

extension CompiledRule {
    /// The port ranges every packet the rule matches lies in, as (low, high - low) for an
    /// unsigned `port &- low <= span` check: the rule's own ranges, or the whole range for an
    /// inverted or absent one. The classifiers' boxes use it.
    var portBox: (sportLo: UInt16, sportSpan: UInt16, dportLo: UInt16, dportSpan: UInt16) {
        let sp = portsUsed && !sportInvert, dp = portsUsed && !dportInvert
        return (sp ? sportLo : 0, sp ? sportHi &- sportLo : .max, dp ? dportLo : 0, dp ? dportHi &- dportLo : .max)
    }

    /// `matches`, branch-free: the same answers.
    ///
    /// Every field is compared and the results are combined with `&`,
    /// so a rule costs one data-dependent branch (match or not) instead of one per field. The
    /// classifiers call this for candidates that mostly do not match, in an order the branch
    /// predictor cannot learn; with short-circuit `if`s each field was a likely mispredict.
    /// Same answers as the field-by-field form (xt_tcpudp order: a later fragment never matches
    /// a port rule; a first fragment too short for the ports hotdrops if the rest matched).
    @inlinable
    public func matchesBranchFree(_ f: PacketFields) -> MatchResult {
        // A Bool is one byte holding 0 or 1: read it as that byte (`b ? 1 : 0` compiles to a
        // branch here).
        @inline(__always) func bit(_ b: Bool) -> UInt32 { UInt32(unsafeBitCast(b, to: UInt8.self)) }
        var ok = bit(((f.source & srcMask) == srcNet) != srcInvert)
        ok &= bit(((f.destination & dstMask) == dstNet) != dstInvert)
        ok &= bit(proto == 0) | bit((f.proto == proto) != protoInvert)
        // A negative interface index reads as >= 64 and never hits.
        let ii = UInt64(UInt16(bitPattern: f.inInterface)), oi = UInt64(UInt16(bitPattern: f.outInterface))
        let inHit = bit(ii < 64) & UInt32(truncatingIfNeeded: (inMask >> (ii & 63)) & 1)
        let outHit = bit(oi < 64) & UInt32(truncatingIfNeeded: (outMask >> (oi & 63)) & 1)
        ok &= bit(inAny) | (inHit ^ bit(inInvert))
        ok &= bit(outAny) | (outHit ^ bit(outInvert))
        ok &= bit(fragment == 0) | bit(f.laterFragment == (fragment == 1))
        let sp = bit(f.sourcePort >= sportLo) & bit(f.sourcePort <= sportHi)
        let dp = bit(f.destinationPort >= dportLo) & bit(f.destinationPort <= dportHi)
        let notLater = bit(!f.laterFragment)
        let portsOK = bit(!portsUsed) | (notLater & bit(f.hasL4) & (sp ^ bit(sportInvert)) & (dp ^ bit(dportInvert)))
        if ok & portsOK != 0 { return .match }
        // Hotdrop: everything else matched, the rule needs ports, and a first fragment is too
        // short to hold them. Rare (no L4 header), so this branch is predicted well.
        if !f.hasL4 && ok & notLater & bit(portsUsed) & bit(f.l4Truncated) != 0 { return .hotdrop }
        return .noMatch
    }
}

/// Interface names known to an engine, indexed by small integers (bit positions in rule masks).
public struct InterfaceTable: Sendable {
    public private(set) var names: [String] = []
    public static let capacity = 64

    public init(_ names: [String]) {
        for n in names { _ = add(n) }
    }

    @discardableResult
    public mutating func add(_ name: String) -> Int {
        if let i = names.firstIndex(of: name) { return i }
        names.append(name)
        return names.count - 1
    }

    public func index(_ name: String) -> Int? { names.firstIndex(of: name) }

    public func mask(_ spec: InterfaceSpec) -> UInt64 {
        var m: UInt64 = 0
        for (i, n) in names.enumerated() where i < Self.capacity && spec.matches(n) { m |= 1 << UInt64(i) }
        return m
    }
}

public struct CompileError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A table compiled for matching: chains of flat rules, addressed by chain index (same indices
/// as the source `Table`).
public struct CompiledTable: Sendable {
    public var name: TableName
    public var chains: [[CompiledRule]]
    public var chainNames: [String]
    /// Policy per chain (nil for user chains).
    public var policies: [Policy?]
    /// First rule id of each chain in the engine's counter array.
    public var firstRuleID: [Int32]
    /// Global id of chain 0 of this table (for policy entries in traces).
    public var firstChainID: Int32

    /// `residual(rule, table)` appends the rule's residual matches to the engine's table and
    /// returns (start, count); `action(rule)` does the same for a non-jump target.
    public init(_ table: Table, interfaces: InterfaceTable, firstID: Int32, firstChainID: Int32,
                residual: (Rule) throws(CompileError) -> (Int32, Int16),
                action: (Rule) throws(CompileError) -> Int32) throws(CompileError) {
        guard interfaces.names.count <= InterfaceTable.capacity else {
            throw CompileError("more than \(InterfaceTable.capacity) interfaces")
        }
        name = table.name
        chainNames = table.chains.map(\.name)
        policies = table.chains.map(\.policy)
        self.firstChainID = firstChainID
        chains = []
        firstRuleID = []
        var id = firstID
        for chain in table.chains {
            firstRuleID.append(id)
            var out: [CompiledRule] = []
            out.reserveCapacity(chain.rules.count)
            for r in chain.rules {
                var c = Self.compileHeader(r, interfaces: interfaces, id: id)
                (c.residualStart, c.residualCount) = try residual(r)
                switch r.target {
                case .none: c.target = .none
                case .accept: c.target = .accept
                case .drop: c.target = .drop
                case .return: c.target = .return
                case .jump(let n): c.target = .jump(Int32(n))
                case .goto(let n): c.target = .goto(Int32(n))
                default: c.target = .action(try action(r))
                }
                out.append(c)
                id += 1
            }
            chains.append(out)
        }
    }

    public var ruleCount: Int { chains.reduce(0) { $0 + $1.count } }

    public static func compileHeader(_ r: Rule, interfaces: InterfaceTable, id: Int32) -> CompiledRule {
        var c = CompiledRule()
        let m = r.match
        if let s = m.source { c.srcMask = s.value.mask; c.srcNet = s.value.network; c.srcInvert = s.invert }
        if let d = m.destination { c.dstMask = d.value.mask; c.dstNet = d.value.network; c.dstInvert = d.invert }
        if let p = m.proto { c.proto = p.value; c.protoInvert = p.invert }
        if let i = m.inInterface { c.inAny = false; c.inMask = interfaces.mask(i.value); c.inInvert = i.invert }
        if let o = m.outInterface { c.outAny = false; c.outMask = interfaces.mask(o.value); c.outInvert = o.invert }
        if let f = m.fragment { c.fragment = f ? 1 : 2 }
        let (sp, dp) = m.ports
        if let sp { c.portsUsed = true; c.sportLo = sp.value.lo; c.sportHi = sp.value.hi; c.sportInvert = sp.invert }
        if let dp { c.portsUsed = true; c.dportLo = dp.value.lo; c.dportHi = dp.value.hi; c.dportInvert = dp.invert }
        // A tcp/udp module with only other options (e.g. --tcp-flags) still needs the L4 header:
        // the residual check handles that.
        c.id = id
        return c
    }
}

/// First-match evaluation, rule by rule: the reference every faster classifier is checked
/// against. Cost: linear in the rules scanned. Returns candidates whose header part matches;
/// the engine then checks residual matches and continues from the next index if they fail.
public enum LinearClassifier {
    /// The first rule at or after `start` in `rules` whose header part matches (or hotdrops).
    @inlinable
    public static func firstMatch(_ rules: [CompiledRule], from start: Int, _ f: PacketFields) -> (index: Int, result: MatchResult)? {
        var i = start
        while i < rules.count {
            let r = rules[i].matches(f)
            if r != .noMatch { return (i, r) }
            i += 1
        }
        return nil
    }
}

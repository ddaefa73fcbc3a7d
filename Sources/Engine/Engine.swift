import Classifier
import Conntrack
import Diagnostics
import NetModel
import Rules
import Wire

/// The netfilter hooks, in packet order.
public enum Hook: UInt8, Sendable, CaseIterable {
    case prerouting, input, forward, output, postrouting
    public var chainName: String {
        switch self {
        case .prerouting: "PREROUTING"
        case .input: "INPUT"
        case .forward: "FORWARD"
        case .output: "OUTPUT"
        case .postrouting: "POSTROUTING"
        }
    }
}

public struct EngineOptions: Sendable {
    /// Sets for `-m set` (`--ipsets FILE`).
    public var ipsets = IPSetCollection()
    /// Seed of the generator behind `-m statistic --mode random` (replays are deterministic).
    public var seed: UInt64 = 0x5EED
    /// Connection tracking: nil = on when the rule set needs it (the nat table, conntrack /
    /// state / connmark matches, CONNMARK), as the kernel loads conntrack only then.
    public var conntrack: Bool? = nil
    /// Connection table size (the kernel's nf_conntrack_max on a big box).
    public var conntrackCapacity = 262_144
    public var conntrackTimeouts = Timeouts.kernelDefaults
    /// nf_conntrack_checksum: TCP/UDP/ICMP checksums verified on PREROUTING; a bad one is INVALID.
    public var conntrackChecksum = true
    /// Fixed hash secret (tests); nil = random per process.
    public var conntrackSecret: (UInt64, UInt64)? = nil
    /// How a chain finds its next candidate rule: a scan (`LinearClassifier`), or a cut tree
    /// and tuple tables built per chain at load (`CompiledChain`, docs/classifier.md; chains
    /// under 16 rules are scanned either way). Same answers (differential tests); the compiled
    /// form costs build time and memory and pays off on long chains.
    public var classifier: ClassifierKind = .compiled
    /// Inline (NFQUEUE): the kernel forwards the packet after the verdict, so the engine leaves
    /// what ip_forward itself writes (TTL decrement, Record Route) to the kernel, and decides
    /// everything else as in replay.
    public var inline = false
    /// Inline LOOKUP: route table -> the fwmark the operator's `ip rule fwmark M lookup TABLE`
    /// uses; the packet leaves with that mark so the kernel's routing takes the table.
    public var routeMarks: [UInt32: UInt32] = [:]
    public init() {}
}

public enum ClassifierKind: String, Sendable, CaseIterable {
    case linear, compiled
}

/// A chain's rules, and with the compiled classifier its `CompiledChain`, behind a reference:
/// an immutable class's `let` fields are read in place (borrowed), never copied, and
/// `Unmanaged` reaches them without a retain.
final class ChainBox: Sendable {
    let rules: [CompiledRule]
    /// Empty (no tables) when `compiled` is false.
    let chain: CompiledChain
    let compiled: Bool
    /// The `CompiledRule.id` of `rules[0]`: ids run on through a chain, so rule i's is
    /// `firstID + i`, known without loading the rule.
    let firstID: Int32
    init(_ rules: [CompiledRule], firstID: Int32, compiled: Bool) {
        self.rules = rules
        self.firstID = firstID
        self.compiled = compiled
        chain = compiled ? CompiledChain(rules) : CompiledChain([])
    }
}

/// What the engine reads and writes for a rule that matched, in one place: its counters, its
/// target and whether it has residual matches. A lookup that answers from the rule's box alone
/// (`CompiledChain`'s exact boxes) never loads the 88-byte `CompiledRule`; reading the target
/// from it and the counters from two more arrays cost three or four cache misses per packet
/// on big rule sets (acl1_100k: about half of `sluice bench --stage classify`'s time), this
/// slot one.
struct RuleSlot: Sendable {
    var packets: UInt64 = 0
    var bytes: UInt64 = 0
    let target: CompiledTarget
    let hasResiduals: Bool
}

/// The packet engine: hooks in kernel order, at each hook its tables in priority order (raw,
/// mangle, nat, filter, security), the routing decision from the network model between
/// PREROUTING and INPUT/FORWARD, first-match chain evaluation, targets, counters.
///
/// `process` works on plain arrays of plain structs: it allocates nothing once the caller's
/// trace and reply buffers have grown to their working size (detailed traces and LOG lines
/// excepted, which format text).
public struct Engine: Sendable {
    public let ruleSet: RuleSet
    public let network: NetworkModel
    public private(set) var interfaces: InterfaceTable
    public let tables: [CompiledTable]
    /// Every table's chains, by global chain ID (`CompiledTable.firstChainID` + chain), each in
    /// an immutable box reached per lookup through `chainRefs` with no reference counting: a
    /// chain read out of an array (or through a pointer) by value is a copy of the struct, a
    /// retain and a release of each of its arrays per lookup (about 45% of `sluice bench
    /// --stage classify`'s time before this; docs/benchmarks.md), and holding a chain's rule
    /// array across the loop was a retain and a release per chain run.
    let chainBoxes: [ChainBox]
    /// `chainBoxes` unretained, for `runChain`: the boxes live as long as the engine.
    let chainRefs: [Unmanaged<ChainBox>]
    /// The (table, built-in chain) pairs each hook runs, in order, all hooks in one array:
    /// hook h (`Hook.rawValue`) runs `hookChains[hookStart[h] ..< hookStart[h + 1]]`. (An array
    /// per hook, held across the hook's chains, was a retain and a release per hook.)
    let hookChains: [(table: Int32, chain: Int32)]
    let hookStart: [Int]
    let residuals: [ResidualMatch]
    let multiportRanges: [PortRange]
    let actions: [TargetAction]
    let sets: [CompiledIPSet]
    var state: MatchState

    /// Per rule, indexed by `CompiledRule.id`: counters, target, residual flag.
    var ruleSlots: [RuleSlot]
    /// Per-rule counters, indexed by `CompiledRule.id` (copies out of `ruleSlots`).
    public var rulePackets: [UInt64] { ruleSlots.map(\.packets) }
    public var ruleBytes: [UInt64] { ruleSlots.map(\.bytes) }
    /// Per-chain policy counters, indexed by global chain id.
    public internal(set) var policyPackets: [UInt64]
    public internal(set) var policyBytes: [UInt64]
    /// Verdict and reason counters.
    public private(set) var verdictCounts: [UInt64] = Array(repeating: 0, count: VerdictKind.allCases.count)
    public private(set) var reasonCounts: [UInt64] = Array(repeating: 0, count: EngineReason.allCases.count)
    public private(set) var malformed = DropCounters()
    public private(set) var passedByKind: [UInt64] = Array(repeating: 0, count: L3Kind.allCases.count)

    /// Index of the `lo` interface (always present).
    public let loopback: Int16
    /// Network-model interface id per engine interface index (-1 when the model lacks it).
    let modelInterface: [Int]
    /// The inverse: per network-model interface ID, the engine's index (-1: none), so that the
    /// routing decision's output interface costs no name lookup per packet.
    let engineInterface: [Int16]
    var stack: [(chain: Int32, next: Int32)] = []
    /// The connection table, when `tracking`. Stored non-optional: testing or unwrapping an
    /// optional struct stored property copies it (a retain and release of each of its buffers),
    /// which the profile showed on every packet of a stateful rule set.
    var ct: ConnTable
    /// Connection tracking is on.
    public private(set) var tracking: Bool
    /// The connection table; nil when conntrack is off.
    public var conntrack: ConnTable? { tracking ? ct : nil }
    var fragments = FragmentMemory()
    let conntrackChecksum: Bool
    /// Index of the nat table in `tables`, if loaded.
    let natTable: Int?
    let inline: Bool
    let routeMarks: [UInt32: UInt32]

    public init(rules: RuleSet, network: NetworkModel, extraInterfaces: [String] = [], options: EngineOptions = EngineOptions()) throws(Diagnostic) {
        ruleSet = rules
        self.network = network
        var ifs = InterfaceTable(network.interfaceNames)
        ifs.add("lo")
        for n in extraInterfaces where n != "local" { ifs.add(n) }
        interfaces = ifs
        loopback = Int16(ifs.index("lo")!)
        modelInterface = ifs.names.map { network.interfaceIndex(named: $0) ?? -1 }
        engineInterface = network.interfaceNames.map { n in ifs.index(n).map { Int16($0) } ?? -1 }

        var residuals: [ResidualMatch] = []
        var ranges: [PortRange] = []
        var actions: [TargetAction] = []
        var state = MatchState()
        state.random = SplitMix64(seed: options.seed)
        let sets = options.ipsets.sets.map(CompiledIPSet.init)
        var tables: [CompiledTable] = []
        var ruleID: Int32 = 0, chainID: Int32 = 0
        for t in rules.tables {
            try Self.checkSupported(t)
            let compiled: CompiledTable
            do {
                compiled = try CompiledTable(t, interfaces: ifs, firstID: ruleID, firstChainID: chainID,
                    residual: { (r: Rule) throws(CompileError) -> (Int32, Int16) in
                        let start = Int32(residuals.count)
                        try Self.compileResiduals(r, into: &residuals, ranges: &ranges, state: &state, ipsets: options.ipsets)
                        return (start, Int16(Int32(residuals.count) - start))
                    },
                    action: { (r: Rule) throws(CompileError) -> Int32 in
                        actions.append(try Self.compileAction(r))
                        return Int32(actions.count - 1)
                    })
            } catch {
                throw Diagnostic(file: t.chains.first?.rules.first?.origin.file ?? "<rules>", line: 0, column: 0, message: error.message)
            }
            ruleID += Int32(compiled.ruleCount)
            chainID += Int32(t.chains.count)
            tables.append(compiled)
        }
        self.tables = tables
        chainBoxes = tables.flatMap { t in
            zip(t.chains, t.firstRuleID).map { ChainBox($0, firstID: $1, compiled: options.classifier == .compiled) }
        }
        chainRefs = chainBoxes.map { Unmanaged.passUnretained($0) }
        natTable = tables.firstIndex { $0.name == .nat }
        let needsCT = rules.tables.contains { t in
            t.name == .nat || t.chains.contains { c in c.rules.contains { r in r.target.needsConntrack || r.match.extensions.contains(where: \.needsConntrack) } }
        }
        tracking = options.conntrack ?? needsCT
        ct = tracking ? ConnTable(capacity: options.conntrackCapacity, timeouts: options.conntrackTimeouts, secret: options.conntrackSecret)
            : ConnTable(capacity: 1, timeouts: options.conntrackTimeouts, secret: (0, 0))
        conntrackChecksum = options.conntrackChecksum
        inline = options.inline
        routeMarks = options.routeMarks
        self.residuals = residuals
        self.multiportRanges = ranges
        self.actions = actions
        self.sets = sets
        self.state = state
        var hooks: [(table: Int32, chain: Int32)] = []
        var starts = [0]
        for h in Hook.allCases {
            var list: [(table: Int32, chain: Int32, priority: Int)] = []
            for (ti, t) in tables.enumerated() {
                if let c = t.chainNames.firstIndex(of: h.chainName), t.policies[c] != nil {
                    list.append((Int32(ti), Int32(c), Self.priority(t.name, h)))
                }
            }
            hooks += list.sorted { $0.priority < $1.priority }.map { ($0.table, $0.chain) }
            starts.append(hooks.count)
        }
        hookChains = hooks
        hookStart = starts
        let all = tables.flatMap { $0.chains.joined() }
        // Rule ids are positions in this order (`CompiledTable` numbers them chain by chain).
        precondition(all.count == Int(ruleID) && all.enumerated().allSatisfy { $0.element.id == Int32($0.offset) })
        ruleSlots = all.map { RuleSlot(target: $0.target, hasResiduals: $0.residualCount != 0) }
        policyPackets = Array(repeating: 0, count: Int(chainID))
        policyBytes = Array(repeating: 0, count: Int(chainID))
        stack.reserveCapacity(64)
    }

    /// Netfilter hook priorities (NF_IP_PRI_*): raw -300, mangle -150, DNAT -100, filter 0,
    /// security 50, SNAT 100. The nat table is DNAT at PREROUTING/OUTPUT, SNAT at INPUT/POSTROUTING.
    static func priority(_ t: TableName, _ h: Hook) -> Int {
        switch t {
        case .raw: -300
        case .mangle: -150
        case .nat: h == .prerouting || h == .output ? -100 : 100
        case .filter: 0
        case .security: 50
        }
    }

    /// What this version cannot evaluate is refused at load, naming the rule.
    static func checkSupported(_ t: Table) throws(Diagnostic) {
        for c in t.chains {
            for r in c.rules {
                if case .lookup(let name, _) = r.target, UInt32(name) == nil, !["main", "default", "local"].contains(name) {
                    throw Diagnostic(file: r.origin.file, line: r.origin.line, column: 1,
                                     message: "LOOKUP --table '\(name)': name the route table by number (as in the network model's 'ip route ... table N')")
                }
                let noSockets = { (what: String) -> Diagnostic in
                    Diagnostic(file: r.origin.file, line: r.origin.line, column: 1,
                               message: "\(what) needs the box's sockets, which a capture does not carry; Sluice cannot evaluate it")
                }
                if let e = r.match.extensions.first(where: \.needsSockets) { throw noSockets("match '\(e.moduleName)'") }
                if case .tproxy = r.target { throw noSockets("target 'TPROXY'") }
            }
        }
    }

    static func compileResiduals(_ r: Rule, into out: inout [ResidualMatch], ranges: inout [PortRange], state: inout MatchState,
                                 ipsets: IPSetCollection) throws(CompileError) {
        let where_ = "\(r.origin.file):\(r.origin.line)"
        for e in r.match.extensions {
            switch e {
            case .tcp(let x):
                if x.sourcePort == nil && x.destinationPort == nil { out.append(.needsL4) }
                if let f = x.flags { out.append(.tcpFlags(mask: f.value.mask, comparison: f.value.comparison, invert: f.invert)) }
                if let o = x.option { out.append(.tcpOption(kind: o.value, invert: o.invert)) }
            case .udp(let x):
                if x.sourcePort == nil && x.destinationPort == nil { out.append(.needsL4) }
            case .icmp(let x):
                out.append(.needsL4)
                if let x { out.append(.icmpType(x.value, invert: x.invert)) }
            case .multiport(let x):
                out.append(.needsL4)
                out.append(.multiport(start: Int32(ranges.count), count: Int16(x.ports.count), direction: x.direction, invert: x.invert))
                ranges.append(contentsOf: x.ports)
            case .iprange(let x):
                if let s = x.source { out.append(.sourceRange(lo: s.value.lo, hi: s.value.hi, invert: s.invert)) }
                if let d = x.destination { out.append(.destinationRange(lo: d.value.lo, hi: d.value.hi, invert: d.invert)) }
            case .addrtype(let x): out.append(.addrtype(x))
            case .mark(let m): out.append(.mark(m.value, invert: m.invert))
            case .comment: break
            case .length(let l): out.append(.length(lo: l.value.lo, hi: l.value.hi, invert: l.invert))
            case .ttl(let x): out.append(.ttl(x.comparison, x.value, invert: x.invert))
            case .statistic(let x):
                switch x.mode {
                case .random(_, let threshold): out.append(.random(threshold: threshold, invert: x.invert))
                case .nth(let every, let packet):
                    // libxt_statistic starts the counter at every-1-packet: `--every 3 --packet 0`
                    // matches the 1st, 4th, 7th... packet (checked against the kernel).
                    out.append(.nth(slot: Int32(state.nthCounters.count), every: every, invert: x.invert))
                    state.nthCounters.append((every - 1) &- min(packet, every - 1))
                }
            case .limit(let x):
                out.append(.limit(slot: Int32(state.limitCredit.count), perNanos: Double(x.count) / (Double(x.perSeconds) * 1e9), burst: Double(x.burst)))
                state.limitCredit.append(Double(x.burst))
                state.limitLast.append(Int64.min)
            case .recent(let x):
                var list = state.recentNames.firstIndex(of: x.name)
                if list == nil { state.recentNames.append(x.name); state.recent.append(RecentList()); list = state.recent.count - 1 }
                out.append(.recent(list: Int32(list!), x))
            case .mac(let m): out.append(.mac(m.value, invert: m.invert))
            case .pkttype(let p):
                out.append(.pkttype(p.value == .unicast ? 0 : p.value == .broadcast ? 1 : 2, invert: p.invert))
            case .set(let s):
                guard let idx = ipsets.index(s.name) else {
                    throw CompileError("\(where_): set '\(s.name)' is not declared (give its ipset save file with --ipsets FILE)")
                }
                guard s.directions.count == 1 else {
                    throw CompileError("\(where_): set '\(s.name)': one src or dst flag for an address set")
                }
                out.append(.set(index: Int32(idx), source: s.directions[0] == .src, invert: s.invert))
            case .physdevIsBridged(let inv): out.append(.constant(inv))
            case .policy(_, let ipsec, let inv): out.append(.constant(!ipsec != inv))
            case .nfacct: out.append(.constant(true))
            case .socket, .owner:
                throw CompileError("\(where_): match '\(e.moduleName)' needs the box's sockets")
            case .state(let st): out.append(.ctState(st.value, invert: st.invert))
            case .connmark(let m): out.append(.connmark(m.value, invert: m.invert))
            case .conntrack(let x):
                // `--ctstate` alone (the common case) is the `state` match: the same answer
                // with fewer checks.
                var rest = x
                rest.state = nil
                if let st = x.state, rest == ConntrackMatch() {
                    out.append(.ctState(st.value, invert: st.invert))
                } else {
                    out.append(.conntrack(x))
                }
            }
        }
    }

    static func compileAction(_ r: Rule) throws(CompileError) -> TargetAction {
        switch r.target {
        case .reject(let w): return .reject(w)
        case .log(let o): return .log(o)
        case .mark(let v, let m): return .mark(value: v, mask: m)
        case .ttl(let op): return .ttl(op)
        case .dscp(let d): return .dscp(d)
        case .tcpmss(let op): return .tcpmss(op)
        case .checksumFill: return .checksumFill
        case .notrack: return .notrack
        case .copy(let to, _, _): return .copy(to: to)
        case .tee(let gateway): return .copy(to: gateway)
        case .lookup(let name, _):
            let n: UInt32 = UInt32(name) ?? (name == "main" ? 254 : name == "local" ? 255 : 253)
            return .lookup(table: n)
        case .connmark(let op): return .connmark(op)
        case .dnat(let rs, let f): return .nat(.dnat(rs, f))
        case .snat(let rs, let f): return .nat(.snat(rs, f))
        case .masquerade(let p, let f): return .nat(.masquerade(p.map { [$0] } ?? [], f))
        case .redirect(let p, let f): return .nat(.redirect(p.map { [$0] } ?? [], f))
        case .netmap(let prefix): return .nat(.netmap(prefix))
        default: throw CompileError("\(r.origin.file):\(r.origin.line): target '\(r.target.name)' is not available in this version")
        }
    }

    /// A reload: the new engine takes over the old one's connection table (connections, NAT
    /// bindings and CONNMARKs survive), as iptables-restore leaves nf_conntrack alone.
    public mutating func adoptConnections(from old: inout Engine) {
        guard old.tracking else { return }
        ct = old.ct
        tracking = true
        old.ct = ConnTable(capacity: 1, secret: (0, 0))
        old.tracking = false
    }

    public func interfaceIndex(_ name: String) -> Int16? { interfaces.index(name).map { Int16($0) } }
    public func interfaceName(_ i: Int16) -> String { i >= 0 && Int(i) < interfaces.names.count ? interfaces.names[Int(i)] : "?" }

    func modelID(_ i: Int16) -> Int? {
        guard i >= 0, Int(i) < modelInterface.count, modelInterface[Int(i)] >= 0 else { return nil }
        return modelInterface[Int(i)]
    }

    func engineIndex(_ modelID: Int) -> Int16 {
        modelID >= 0 && modelID < engineInterface.count ? engineInterface[modelID] : -1
    }

    // MARK: - Processing

    /// Processes one frame that arrived on `inInterface` (or was generated locally when
    /// `inInterface` is nil). `frame` is mutable: forwarding decrements the TTL in place, and
    /// targets may rewrite header fields (incremental checksums). `p` is caller-owned scratch for
    /// the parse; `emitted` receives the packets the box sends besides this one: its answer (see
    /// `Decision.generatedOut`) and COPY clones.
    ///
    /// `wireLength`: the frame's length on the wire when a capture kept less (caplen < len).
    /// `capacity`: bytes usable from `frame.baseAddress` (>= frame.count); targets that grow the
    /// packet (TCPMSS adding an option) need room, and report the new length in
    /// `Decision.frameLength` and the parse (`p`).
    public mutating func process(frame: UnsafeMutableRawBufferPointer, capacity: Int? = nil, linkType: LinkType, wireLength: Int? = nil,
                                 inInterface: Int16?, timestampNanos: Int64 = 0, mark: UInt32 = 0, checksumVerified: Bool = false,
                                 parsed p: inout ParsedPacket, trace: inout HitTrace, emitted: inout Emitted) -> Decision {
        trace.clear()
        emitted.clear()
        var d = Decision()
        guard PacketParser.parse(UnsafeRawBufferPointer(frame), linkType: linkType, wireLength: wireLength, into: &p) else {
            d.kind = .dropped; d.reason = .malformed; d.malformed = p.drop
            malformed[p.drop!] &+= 1
            return count(d)
        }
        guard p.kind == .ipv4 else {
            d.kind = .passed
            passedByKind[Int(p.kind.rawValue)] &+= 1
            return count(d)
        }
        let l3 = Int(p.l3Offset)
        var f = PacketFields(p, inInterface: inInterface ?? -1, outInterface: -1)
        f.mark = mark
        if linkType == .ethernet && l3 >= 14 {
            f.hasMAC = true
            var mac: UInt64 = 0
            for k in 6 ..< 12 { mac = mac << 8 | UInt64(frame[k]) }
            f.sourceMAC = mac
            f.packetType = frame[0] & 1 == 0 ? 0 : (frame[0] == 0xFF && frame[1] == 0xFF && frame[2] == 0xFF && frame[3] == 0xFF && frame[4] == 0xFF && frame[5] == 0xFF ? 1 : 2)
        } else if p.destination >> 28 == 0xE {
            f.packetType = 2
        } else if network.addressKind(p.destination) == .broadcast {
            f.packetType = 1
        }
        let bytes = UInt64(p.ipTotalLength)
        var ctx = PacketContext(frame: frame, l3: l3, bytes: bytes, now: timestampNanos, l4: Int(p.l4Offset),
                                capturedEnd: l3 + Int(p.ipCapturedLength))
        ctx.capacity = max(frame.count, capacity ?? frame.count)
        ctx.recordNAT = trace.recordNAT || trace.detailed
        ctx.untrimmed = !p.captureTruncated && l3 + Int(p.ipTotalLength) == frame.count
        ctx.checksumVerified = checksumVerified

        if let iif = inInterface {
            if trace.detailed { trace.lines.append("in \(interfaceName(iif)): \(describe(p))") }
            // Martians: the kernel drops these in ip_route_input_slow, after PREROUTING.
            let martianSource = p.source >> 24 == 127 && iif != loopback || p.source >> 28 == 0xE || p.source == 0xFFFF_FFFF
                || network.isLocal(p.source) && iif != loopback
            if !runHook(.prerouting, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
            if martianSource { d.reason = .martianSource; return finish(d, ctx) }
            if p.destination >> 24 == 0 || p.destination >> 24 == 127 && iif != loopback {
                d.reason = .martianDestination; return finish(d, ctx)
            }
            if p.hasIPOptions, let reason = sourceRouteCheck(ctx) { d.reason = reason; return finish(d, ctx) }
            let decision: RouteDecision
            if p.destination >> 28 == 0xE {
                // Multicast: delivered when the box is in the group: all-hosts (224.0.0.1) always,
                // and IGMP in 224.0.0.0/24; no multicast routing.
                let joined = p.destination == 0xE000_0001 || (p.destination >> 8 == 0xE00000 && p.proto == IPProtocol.igmp)
                if !joined { d.reason = .noRoute; if trace.detailed { trace.lines.append("route: multicast group not joined: drop") }; return finish(d, ctx) }
                decision = .local(interface: modelID(iif))
            } else if let table = ctx.lookupTable {
                decision = network.route(destination: f.destination, inTable: table)
            } else {
                decision = network.route(destination: f.destination, source: f.source, inputInterface: modelID(iif), mark: f.mark, tos: f.tos)
            }
            if trace.detailed { trace.lines.append("route: \(describe(decision)) (mark \(hex(f.mark)))") }
            switch decision {
            case .local:
                if !runHook(.input, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                d.kind = .local
                d.mark = f.mark
                return finish(d, ctx)
            case .unicast(let oif, let gw):
                ctx.nextHop = gw ?? f.destination
                guard network.ipForward else { d.reason = .forwardingDisabled; return finish(d, ctx) }
                // ip_forward: only frames addressed to this host (not link broadcast/multicast).
                guard f.packetType == 0 || !f.hasMAC else { d.reason = .linkNotUnicast; return finish(d, ctx) }
                let out = engineIndex(oif)
                guard f.ttl > 1 else {
                    d.reason = .ttlExceeded
                    // ip_forward: ICMP time exceeded from the box, quoting the packet as received.
                    let src = replySource(to: p.source)
                    Replies.icmpError(original: ctx.ip, source: src, type: ICMPType.timeExceeded, code: 0, into: &emitted.reply)
                    d.generatedOut = sendReply(&emitted.reply, trace: &trace)
                    return finish(d, ctx)
                }
                // ip_forward decrements the TTL before the FORWARD hook.
                f.ttl -= 1
                if !inline { Rewrite.setTTL(frame, l3: l3, f.ttl) }
                f.outInterface = out
                if !runHook(.forward, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                if p.hasIPOptions && !inline { forwardOptions(ctx, outInterface: oif, gateway: gw ?? f.destination) }
                if !runHook(.postrouting, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                d.kind = .forwarded
                d.outInterface = out
                d.mark = f.mark
                noteGrowth(ctx, &d, &p)
                return finish(d, ctx)
            case .blackhole: d.reason = .blackhole
            case .unreachable: d.reason = .unreachable
            case .prohibit: d.reason = .prohibit
            case .noRoute: d.reason = .noRoute
            }
            return finish(d, ctx)
        }

        // Locally generated: routing decision -> OUTPUT -> (re-route) -> POSTROUTING.
        if trace.detailed { trace.lines.append("local out: \(describe(p))") }
        let first = network.route(destination: p.destination, source: p.source, inputInterface: nil, mark: 0, tos: p.tos)
        if trace.detailed { trace.lines.append("route: \(describe(first))") }
        guard case .unicast(let oif0, let gw0) = first else {
            if case .local = first {
                f.outInterface = loopback
                if !runHook(.output, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                if !runHook(.postrouting, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                // Looped back: arrives on lo, PREROUTING, then INPUT.
                f.inInterface = loopback; f.outInterface = -1
                if !runHook(.prerouting, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                if !runHook(.input, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
                d.kind = .local
                d.mark = f.mark
                return finish(d, ctx)
            }
            d.reason = first == .blackhole ? .blackhole : first == .unreachable ? .unreachable : first == .prohibit ? .prohibit : .noRoute
            return finish(d, ctx)
        }
        f.outInterface = engineIndex(oif0)
        ctx.nextHop = gw0 ?? p.destination
        let markBefore = f.mark
        let destinationBefore = f.destination
        if !runHook(.output, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
        if f.mark != markBefore || ctx.lookupTable != nil || f.destination != destinationBefore {
            // ip_route_me_harder: a mark set in OUTPUT can pick another route (LOOKUP: its table).
            let again = ctx.lookupTable.map { network.route(destination: p.destination, inTable: $0) }
                ?? network.route(destination: f.destination, source: f.source, inputInterface: nil, mark: f.mark, tos: f.tos)
            if trace.detailed { trace.lines.append("re-route (mark \(hex(f.mark))): \(describe(again))") }
            guard case .unicast(let oif, let gw) = again else { d.reason = .noRoute; return finish(d, ctx) }
            f.outInterface = engineIndex(oif)
            ctx.nextHop = gw ?? f.destination
        }
        if !runHook(.postrouting, p, &f, &ctx, trace: &trace, d: &d, emitted: &emitted) { return finishDrop(d, f: f, p: p, ctx: ctx, trace: &trace, emitted: &emitted) }
        d.kind = .sent
        d.outInterface = f.outInterface
        d.mark = f.mark
        noteGrowth(ctx, &d, &p)
        return finish(d, ctx)
    }

    /// A target made the packet longer: the caller writes `frame.count + grown` bytes.
    func noteGrowth(_ ctx: PacketContext, _ d: inout Decision, _ p: inout ParsedPacket) {
        guard ctx.grown > 0 else { return }
        d.grown = ctx.grown
        p.ipTotalLength += UInt16(ctx.grown)
        p.ipCapturedLength += UInt16(ctx.grown)
    }

    /// A hook ended in DROP, REJECT or hotdrop: for REJECT, build and send the reply.
    mutating func finishDrop(_ d0: Decision, f: PacketFields, p: ParsedPacket, ctx: PacketContext, trace: inout HitTrace, emitted: inout Emitted) -> Decision {
        var d = d0
        if d.kind == .rejected, let with = ctx.rejectWith {
            var made = false
            if with == .tcpReset {
                // nf_send_reset: not for later fragments, not when the segment carries RST.
                if !p.isLaterFragment && p.hasL4 && !p.captureTruncated { made = Replies.tcpReset(original: ctx.ip, into: &emitted.reply) }
            } else if !p.isLaterFragment {
                // icmp_send: the address the packet was sent to when it was for the box; otherwise
                // the source the route back to the sender picks.
                let src = network.isLocal(p.destination) ? p.destination : replySource(to: p.source)
                Replies.icmpError(original: ctx.ip, source: src, type: ICMPType.destinationUnreachable, code: with.icmpCode, into: &emitted.reply)
                made = true
            }
            if made { d.generatedOut = sendReply(&emitted.reply, trace: &trace) }
        }
        return finish(d, ctx)
    }

    /// Routes a reply the box sends and runs it through OUTPUT and POSTROUTING; returns the
    /// interface it left by, or -1 when no route or a rule dropped it.
    mutating func sendReply(_ reply: inout [UInt8], trace: inout HitTrace) -> Int16 {
        var rp = ParsedPacket()
        return reply.withUnsafeMutableBytes { m -> Int16 in
            guard PacketParser.parseIPv4(UnsafeRawBufferPointer(m), into: &rp) else { return -1 }
            guard case .unicast(let oif, _) = network.route(destination: rp.destination, source: rp.source, inputInterface: nil) else { return -1 }
            var f = PacketFields(rp, inInterface: -1, outInterface: engineIndex(oif))
            var ctx = PacketContext(frame: m, l3: 0, bytes: UInt64(rp.ipTotalLength), now: 0, l4: Int(rp.l4Offset), capturedEnd: m.count)
            var d = Decision()
            var ignored = Emitted()  // a COPY rule in OUTPUT does not mirror the box's own answers here
            if trace.detailed { trace.lines.append("reply: \(describe(rp))") }
            // Conntrack at OUTPUT sees an empty parse for the box's own answers, as it always has
            // here (the kernel attaches a RST to the original's connection and tracks an ICMP
            // error as RELATED; not modelled).
            let unparsed = ParsedPacket()
            guard runHook(.output, unparsed, &f, &ctx, trace: &trace, d: &d, emitted: &ignored),
                  runHook(.postrouting, unparsed, &f, &ctx, trace: &trace, d: &d, emitted: &ignored) else { return -1 }
            return f.outInterface
        }
    }

    /// The source address the box uses for an ICMP error to `destination` (icmp_send with
    /// saddr 0: the route back picks the egress interface, whose address is chosen).
    func replySource(to destination: UInt32) -> UInt32 {
        guard case .unicast(let oif, let gw) = network.route(destination: destination, inputInterface: nil) else { return 0 }
        return network.sourceAddress(for: oif, gateway: gw ?? destination) ?? 0
    }

    /// Final bookkeeping for a packet with conntrack context: confirm or forget the connection
    /// it created, and report its state.
    mutating func finish(_ d0: Decision, _ ctx: PacketContext) -> Decision {
        var d = d0
        if tracking && ctx.ct.looked {
            if d.kind == .dropped || d.kind == .rejected { conntrackAbort(ctx) } else { conntrackConfirm(ctx) }
            d.ct = ctx.ct.state
        }
        return count(d)
    }

    @inline(__always)
    mutating func count(_ d: Decision) -> Decision {
        verdictCounts[Int(d.kind.rawValue)] &+= 1
        if d.kind == .dropped || d.kind == .rejected { reasonCounts[Int(d.reason.rawValue)] &+= 1 }
        return d
    }

    /// ip_rcv_options: source-routed packets are dropped unless accept_source_route (off by
    /// default in a namespace, and in this model).
    func sourceRouteCheck(_ ctx: PacketContext) -> EngineReason? {
        let ip = ctx.ip
        let hl = Int(ip[0] & 0x0F) * 4
        let o = UnsafeRawBufferPointer(rebasing: ip[20 ..< hl])
        if IPv4Options.contains(o, type: IPv4Options.lsrr) || IPv4Options.contains(o, type: IPv4Options.ssrr) { return .prohibit }
        return nil
    }

    /// ip_forward_options: a Record Route option with room gets the outgoing interface's
    /// address (the kernel's `ip_rt_get_source`), and its pointer moves on.
    func forwardOptions(_ ctx: PacketContext, outInterface: Int, gateway: UInt32) {
        let f = ctx.frame, l3 = ctx.l3
        let hl = Int(f[l3] & 0x0F) * 4
        var i = l3 + 20
        while i < l3 + hl {
            let t = f[i]
            if t == 0 { break }
            if t == 1 { i += 1; continue }
            guard i + 1 < l3 + hl else { break }
            let len = Int(f[i + 1])
            guard len >= 2, i + len <= l3 + hl else { break }
            if t == IPv4Options.recordRoute, len >= 3 {
                let ptr = Int(f[i + 2])
                if ptr + 3 <= len, let addr = network.sourceAddress(for: outInterface, gateway: gateway) {
                    f.setBE32(i + ptr - 1, addr)
                    f[i + 2] = UInt8(ptr + 4)
                    f.setBE16(l3 + 10, 0)
                    f.setBE16(l3 + 10, Checksum.compute(UnsafeRawBufferPointer(rebasing: f[l3 ..< l3 + hl])))
                }
            }
            i += len
        }
    }
}

/// Per-packet state the traversal needs beyond the header fields.
struct PacketContext {
    var frame: UnsafeMutableRawBufferPointer
    var l3: Int
    var bytes: UInt64
    var now: Int64
    var l4: Int
    var capturedEnd: Int
    var rejectWith: RejectWith? = nil
    var untracked = false
    /// Set by LOOKUP: the route table to use instead of the policy rules.
    var lookupTable: UInt32? = nil
    /// Conntrack's view of the packet.
    var ct = CTInfo()
    /// The hook whose nat chain is running (NETMAP's direction).
    var natHook: Hook? = nil
    /// Next hop of the routing decision (MASQUERADE's source address choice).
    var nextHop: UInt32 = 0
    var innerRewritten = false
    var natApplied = false
    /// Keep a text of the rewrites in the trace (`HitTrace.natText`, replay's `nat` field); off
    /// on the hot path, and for the box's own answers (`sendReply`).
    var recordNAT = false
    /// Bytes usable from the frame's start; `grown`: bytes a target added at the end.
    var capacity = 0
    var grown = 0
    /// The frame ends where the IPv4 packet ends (no padding, not cut): growing is safe.
    var untrimmed = false
    /// The kernel already verified the L4 checksum, or it is not computed yet (offload): conntrack
    /// does not check it again (nf_ip_checksum skips CHECKSUM_UNNECESSARY/PARTIAL).
    var checksumVerified = false

    init(frame: UnsafeMutableRawBufferPointer, l3: Int, bytes: UInt64, now: Int64, l4: Int, capturedEnd: Int) {
        self.frame = frame; self.l3 = l3; self.bytes = bytes; self.now = now; self.l4 = l4; self.capturedEnd = capturedEnd
    }

    /// The IPv4 packet as present in the frame.
    var ip: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: frame[l3 ..< capturedEnd]) }

    /// Makes the frame `n` bytes longer (room permitting); false when there is no room.
    mutating func grow(_ n: Int) -> Bool {
        guard untrimmed, frame.count + n <= capacity, let base = frame.baseAddress else { return false }
        frame = UnsafeMutableRawBufferPointer(start: base, count: frame.count + n)
        capturedEnd += n
        grown += n
        return true
    }
}

func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }

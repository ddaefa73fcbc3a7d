import Classifier
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

/// The packet engine: hook traversal in kernel order, routing by the network model, first-match
/// chain evaluation, counters. A plain struct over flat arrays: `process` touches no class and
/// allocates nothing once the trace buffer has grown to its working size.
///
/// This version has the filter table (INPUT, FORWARD, OUTPUT); the other tables are refused at
/// load time by the rule parser, so their hooks are pass-through here.
public struct Engine: Sendable {
    public let ruleSet: RuleSet
    public let network: NetworkModel
    public private(set) var interfaces: InterfaceTable
    public let filter: CompiledTable?

    /// Global chain ids (for trace entries): chain c of the filter table is `chainBase + c`.
    let chainBase: Int32 = 0

    /// Per-rule counters, indexed by `CompiledRule.id`.
    public private(set) var rulePackets: [UInt64]
    public private(set) var ruleBytes: [UInt64]
    /// Per-chain policy counters (built-in chains), indexed by chain index.
    public private(set) var policyPackets: [UInt64]
    public private(set) var policyBytes: [UInt64]
    /// Verdict and reason counters.
    public private(set) var verdictCounts: [UInt64] = Array(repeating: 0, count: 6)
    public private(set) var reasonCounts: [UInt64] = Array(repeating: 0, count: EngineReason.allCases.count)
    public private(set) var malformed = DropCounters()
    public private(set) var passedByKind: [UInt64] = Array(repeating: 0, count: L3Kind.allCases.count)

    /// Index of the `lo` interface (always present).
    public let loopback: Int16
    /// Chain stack for jumps; fixed capacity (the kernel limits nesting too), reused.
    var stack: [(chain: Int32, next: Int32)] = []

    public init(rules: RuleSet, network: NetworkModel, extraInterfaces: [String] = []) throws(CompileError) {
        ruleSet = rules
        self.network = network
        var ifs = InterfaceTable(network.interfaceNames)
        ifs.add("lo")
        for n in extraInterfaces where n != "local" { ifs.add(n) }
        interfaces = ifs
        loopback = Int16(ifs.index("lo")!)
        if let t = rules.table(.filter) {
            filter = try CompiledTable(t, interfaces: ifs, firstID: 0)
        } else {
            filter = nil
        }
        let n = filter?.ruleCount ?? 0
        rulePackets = Array(repeating: 0, count: n)
        ruleBytes = Array(repeating: 0, count: n)
        let chains = filter?.chains.count ?? 0
        policyPackets = Array(repeating: 0, count: chains)
        policyBytes = Array(repeating: 0, count: chains)
        stack.reserveCapacity(64)
    }

    public func interfaceIndex(_ name: String) -> Int16? { interfaces.index(name).map { Int16($0) } }
    public func interfaceName(_ i: Int16) -> String { i >= 0 && Int(i) < interfaces.names.count ? interfaces.names[Int(i)] : "?" }

    /// Processes one frame that arrived on `inInterface` (or was generated locally when
    /// `inInterface` is nil). `frame` is mutable: forwarding decrements the TTL in place
    /// (incremental checksum). `p` is caller-owned scratch for the parse.
    /// `wireLength`: the frame's length on the wire when a capture kept less (caplen < len).
    public mutating func process(frame: UnsafeMutableRawBufferPointer, linkType: LinkType, wireLength: Int? = nil,
                                 inInterface: Int16?, parsed p: inout ParsedPacket, trace: inout HitTrace) -> Decision {
        trace.clear()
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
        let bytes = UInt64(p.ipTotalLength)
        if let iif = inInterface {
            // Received: PREROUTING (no tables in this version) -> routing decision.
            if p.source >> 24 == 127 && iif != loopback || p.source >> 28 == 0xE || network.isLocal(p.source) && iif != loopback {
                d.reason = .martianSource; return count(d)
            }
            if p.destination >> 24 == 0 {
                d.reason = .martianDestination; return count(d)
            }
            switch network.route(destination: p.destination, source: p.source, inputInterface: network.interfaceIndex(named: interfaceName(iif)), mark: 0, tos: p.tos) {
            case .local:
                var f = PacketFields(p, inInterface: iif, outInterface: -1)
                if !runChain(.input, &f, bytes: bytes, trace: &trace, d: &d) { return count(d) }
                d.kind = .local
                return count(d)
            case .unicast(let oif, _):
                guard network.ipForward else { d.reason = .forwardingDisabled; return count(d) }
                guard p.ttl > 1 else { d.reason = .ttlExceeded; return count(d) }
                let out = interfaceIndex(network.interfaceName(oif)) ?? -1
                var f = PacketFields(p, inInterface: iif, outInterface: out)
                if !runChain(.forward, &f, bytes: bytes, trace: &trace, d: &d) { return count(d) }
                decrementTTL(frame, l3Offset: Int(p.l3Offset))
                d.kind = .forwarded
                d.outInterface = out
                return count(d)
            case .blackhole: d.reason = .blackhole
            case .unreachable: d.reason = .unreachable
            case .prohibit: d.reason = .prohibit
            case .noRoute: d.reason = .noRoute
            }
            return count(d)
        } else {
            // Locally generated: routing decision -> OUTPUT -> POSTROUTING.
            switch network.route(destination: p.destination, source: p.source, inputInterface: nil, mark: 0, tos: p.tos) {
            case .local:
                var f = PacketFields(p, inInterface: -1, outInterface: loopback)
                if !runChain(.output, &f, bytes: bytes, trace: &trace, d: &d) { return count(d) }
                // Looped back: arrives on lo, then INPUT.
                f.inInterface = loopback; f.outInterface = -1
                if !runChain(.input, &f, bytes: bytes, trace: &trace, d: &d) { return count(d) }
                d.kind = .local
                return count(d)
            case .unicast(let oif, _):
                let out = interfaceIndex(network.interfaceName(oif)) ?? -1
                var f = PacketFields(p, inInterface: -1, outInterface: out)
                if !runChain(.output, &f, bytes: bytes, trace: &trace, d: &d) { return count(d) }
                d.kind = .sent
                d.outInterface = out
                return count(d)
            case .blackhole: d.reason = .blackhole
            case .unreachable: d.reason = .unreachable
            case .prohibit: d.reason = .prohibit
            case .noRoute: d.reason = .noRoute
            }
            return count(d)
        }
    }

    @inline(__always)
    mutating func count(_ d: Decision) -> Decision {
        verdictCounts[Int(d.kind.rawValue)] &+= 1
        if d.kind == .dropped || d.kind == .rejected { reasonCounts[Int(d.reason.rawValue)] &+= 1 }
        return d
    }

    /// ip_forward's TTL decrement with the RFC 1624 update of the header checksum.
    @inline(__always)
    func decrementTTL(_ frame: UnsafeMutableRawBufferPointer, l3Offset: Int) {
        let word = frame.be16(l3Offset + 8)  // TTL (high byte) and protocol
        let new = word &- 0x0100
        frame.setBE16(l3Offset + 10, Checksum.update(frame.be16(l3Offset + 10), old: word, new: new))
        frame.setBE16(l3Offset + 8, new)
    }

    /// Runs the filter table's built-in chain for `hook`. Returns true when the packet goes on
    /// (ACCEPT by rule or policy); false with `d` filled when it was dropped.
    @inline(__always)
    mutating func runChain(_ hook: Hook, _ f: inout PacketFields, bytes: UInt64, trace: inout HitTrace, d: inout Decision) -> Bool {
        guard let table = filter else { return true }
        let builtin: Int32
        switch hook {
        case .input: builtin = 0
        case .forward: builtin = 1
        case .output: builtin = 2
        default: return true
        }
        var chain = builtin
        var next: Int32 = 0
        stack.removeAll(keepingCapacity: true)
        while true {
            let rules = table.chains[Int(chain)]
            if let (i, result) = LinearClassifier.firstMatch(rules, from: Int(next), f) {
                let r = rules[i]
                if result == .hotdrop {
                    d.kind = .dropped; d.reason = .hotdrop; d.decidedBy = r.id
                    return false
                }
                rulePackets[Int(r.id)] &+= 1
                ruleBytes[Int(r.id)] &+= bytes
                trace.rule(r.id)
                switch r.target {
                case .none:
                    next = Int32(i) + 1
                case .accept:
                    return true
                case .drop:
                    d.kind = .dropped; d.reason = .rule; d.decidedBy = r.id
                    return false
                case .return:
                    if let top = stack.popLast() { chain = top.chain; next = top.next } else {
                        return policy(builtin, bytes: bytes, trace: &trace, d: &d)
                    }
                case .jump(let c):
                    stack.append((chain, Int32(i) + 1))
                    chain = c; next = 0
                case .goto(let c):
                    chain = c; next = 0
                }
            } else {
                // End of chain: built-in -> policy; user chain -> return to the caller.
                if chain == builtin { return policy(builtin, bytes: bytes, trace: &trace, d: &d) }
                if let top = stack.popLast() { chain = top.chain; next = top.next } else {
                    return policy(builtin, bytes: bytes, trace: &trace, d: &d)
                }
            }
        }
    }

    @inline(__always)
    mutating func policy(_ chain: Int32, bytes: UInt64, trace: inout HitTrace, d: inout Decision) -> Bool {
        policyPackets[Int(chain)] &+= 1
        policyBytes[Int(chain)] &+= bytes
        trace.policy(chainBase + chain)
        if filter!.policies[Int(chain)] == .drop {
            d.kind = .dropped; d.reason = .policy; d.decidedBy = -(chainBase + chain + 1)
            return false
        }
        return true
    }

    /// `table:CHAIN:N` (1-based, as `iptables -L --line-numbers`) for a rule id, or
    /// `table:CHAIN:policy` for a policy entry.
    public func describe(traceEntry e: Int32) -> String {
        guard let t = filter else { return "?" }
        if e < 0 {
            let c = Int(-(e + 1) - chainBase)
            return "\(t.name.rawValue):\(t.chainNames[c]):policy"
        }
        for c in t.chains.indices where e >= t.firstRuleID[c] && Int(e - t.firstRuleID[c]) < t.chains[c].count {
            return "\(t.name.rawValue):\(t.chainNames[c]):\(e - t.firstRuleID[c] + 1)"
        }
        return "?"
    }

    /// The rule set with the counters of this run (iptables-save -c format's input).
    public var ruleSetWithCounters: RuleSet {
        var out = ruleSet
        guard let ti = out.tables.firstIndex(where: { $0.name == .filter }), let t = filter else { return out }
        for c in out.tables[ti].chains.indices {
            if out.tables[ti].chains[c].isBuiltin {
                out.tables[ti].chains[c].counters = Counters(packets: policyPackets[c], bytes: policyBytes[c])
            }
            for r in out.tables[ti].chains[c].rules.indices {
                let id = Int(t.firstRuleID[c]) + r
                out.tables[ti].chains[c].rules[r].counters = Counters(packets: rulePackets[id], bytes: ruleBytes[id])
            }
        }
        return out
    }
}

import Wire

/// The five iptables tables, in the kernel's priority order within a hook.
public enum TableName: String, CaseIterable, Sendable, Comparable {
    case raw, mangle, nat, filter, security

    public static func < (a: TableName, b: TableName) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// Built-in chains of each table, in iptables-save order.
    public var builtinChains: [String] {
        switch self {
        case .raw: ["PREROUTING", "OUTPUT"]
        case .mangle: ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"]
        case .nat: ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
        case .filter: ["INPUT", "FORWARD", "OUTPUT"]
        case .security: ["INPUT", "FORWARD", "OUTPUT"]
        }
    }
}

/// A packet/byte counter pair as iptables-save prints it: `[packets:bytes]`.
public struct Counters: Equatable, Sendable {
    public var packets: UInt64
    public var bytes: UInt64
    public init(packets: UInt64 = 0, bytes: UInt64 = 0) { self.packets = packets; self.bytes = bytes }
    public var text: String { "[\(packets):\(bytes)]" }
}

/// Where a rule came from, for messages and traces.
public struct SourceLine: Equatable, Sendable {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
}

public enum Policy: String, Sendable { case accept = "ACCEPT", drop = "DROP" }

/// An interface name as iptables matches it: exact, or a prefix when written with a trailing `+`.
public struct InterfaceSpec: Equatable, Sendable, CustomStringConvertible {
    public var name: String
    public var wildcard: Bool
    public init(_ text: String) {
        if text.hasSuffix("+") { name = String(text.dropLast()); wildcard = true } else { name = text; wildcard = false }
    }
    public func matches(_ iface: String) -> Bool { wildcard ? iface.hasPrefix(name) : iface == name }
    public var description: String { wildcard ? name + "+" : name }
}

/// An inclusive port range; a single port is `lo == hi`.
public struct PortRange: Equatable, Sendable, CustomStringConvertible {
    public var lo: UInt16
    public var hi: UInt16
    public init(_ lo: UInt16, _ hi: UInt16) { self.lo = lo; self.hi = hi }
    @inlinable public func contains(_ p: UInt16) -> Bool { p >= lo && p <= hi }
    public var description: String { lo == hi ? "\(lo)" : "\(lo):\(hi)" }
}

/// A value with iptables' `!` inversion.
public struct Inverted<T: Equatable & Sendable>: Equatable, Sendable {
    public var value: T
    public var invert: Bool
    public init(_ value: T, invert: Bool = false) { self.value = value; self.invert = invert }
}

/// The matches of one rule. `nil` means "any".
public struct RuleMatch: Equatable, Sendable {
    public var source: Inverted<IPv4Prefix>?
    public var destination: Inverted<IPv4Prefix>?
    /// Protocol number; nil = all.
    public var proto: Inverted<UInt8>?
    public var inInterface: Inverted<InterfaceSpec>?
    public var outInterface: Inverted<InterfaceSpec>?
    /// `-f`: true matches second and later fragments, false (`! -f`) unfragmented packets and
    /// first fragments.
    public var fragment: Bool?
    /// Match modules in the order written (`-m tcp --dport 22`, `-m comment ...`).
    public var extensions: [MatchExtension] = []

    public init() {}

    /// The tcp or udp port matches, wherever they were written.
    public var ports: (source: Inverted<PortRange>?, destination: Inverted<PortRange>?) {
        for e in extensions {
            switch e {
            case .tcp(let t): return (t.sourcePort, t.destinationPort)
            case .udp(let u): return (u.sourcePort, u.destinationPort)
            default: continue
            }
        }
        return (nil, nil)
    }

    public var comment: String? {
        for case .comment(let c) in extensions { return c }
        return nil
    }
}

public enum RuleTarget: Equatable, Sendable {
    /// No `-j`: the rule only counts.
    case none
    case accept
    case drop
    case `return`
    /// `-j CHAIN`: index into the table's chains.
    case jump(Int)
    /// `-g CHAIN`.
    case goto(Int)
    case reject(RejectWith)
    /// LOG, or NFLOG when `nflogGroup` is set; non-terminating.
    case log(LogOptions)
    /// MARK in xt_MARK's form: mark = (mark & ~mask) ^ value.
    case mark(value: UInt32, mask: UInt32)
    case connmark(ConnmarkOp)
    case dnat([NATRange], NATFlags)
    case snat([NATRange], NATFlags)
    case masquerade(ports: NATRange?, NATFlags)
    case netmap(IPv4Prefix)
    case redirect(ports: NATRange?, NATFlags)
    case ttl(TTLOp)
    case dscp(UInt8)
    case tcpmss(TCPMSSOp)
    case checksumFill
    case notrack
    /// VNS3: copy the packet to `to` (mirror), original continues.
    case copy(to: UInt32, from: String?, direction: CopyDirection)
    /// TEE --gateway: a clone goes to `gateway` as its next hop; the original continues.
    case tee(gateway: UInt32)
    /// VNS3: policy-route through route table `table`.
    case lookup(table: String, through: Bool)
    /// TPROXY: deliver to a local transparent socket (needs the box's sockets).
    case tproxy(TProxyOptions)

    /// Ends evaluation of the chain when it applies (verdicts, jumps handled separately).
    public var isTerminal: Bool {
        switch self {
        case .accept, .drop, .reject, .dnat, .snat, .masquerade, .netmap, .redirect: true
        default: false
        }
    }

    public var name: String {
        switch self {
        case .none: ""
        case .accept: "ACCEPT"
        case .drop: "DROP"
        case .return: "RETURN"
        case .jump: "jump"
        case .goto: "goto"
        case .reject: "REJECT"
        case .log(let o): o.nflogGroup != nil ? "NFLOG" : "LOG"
        case .mark: "MARK"
        case .connmark: "CONNMARK"
        case .dnat: "DNAT"
        case .snat: "SNAT"
        case .masquerade: "MASQUERADE"
        case .netmap: "NETMAP"
        case .redirect: "REDIRECT"
        case .ttl: "TTL"
        case .dscp: "DSCP"
        case .tcpmss: "TCPMSS"
        case .checksumFill: "CHECKSUM"
        case .notrack: "NOTRACK"
        case .copy: "COPY"
        case .tee: "TEE"
        case .lookup: "LOOKUP"
        case .tproxy: "TPROXY"
        }
    }

    /// Needs connection tracking (NAT bindings, connmark).
    public var needsConntrack: Bool {
        switch self {
        case .connmark, .dnat, .snat, .masquerade, .netmap, .redirect: true
        default: false
        }
    }
}

public struct Rule: Equatable, Sendable {
    public var match: RuleMatch
    public var target: RuleTarget
    public var counters: Counters
    public var origin: SourceLine

    public init(match: RuleMatch, target: RuleTarget, counters: Counters = Counters(), origin: SourceLine) {
        self.match = match; self.target = target; self.counters = counters; self.origin = origin
    }
}

public struct Chain: Equatable, Sendable {
    public var name: String
    /// Built-in chains have a policy; user chains have none (they return to the caller).
    public var policy: Policy?
    public var counters: Counters
    public var rules: [Rule]

    public init(name: String, policy: Policy?, counters: Counters = Counters(), rules: [Rule] = []) {
        self.name = name; self.policy = policy; self.counters = counters; self.rules = rules
    }
    public var isBuiltin: Bool { policy != nil }
}

public struct Table: Equatable, Sendable {
    public var name: TableName
    public var chains: [Chain]

    public init(name: TableName) {
        self.name = name
        chains = name.builtinChains.map { Chain(name: $0, policy: .accept) }
    }

    public func chainIndex(_ name: String) -> Int? { chains.firstIndex { $0.name == name } }
}

/// A whole rule set: the tables that were loaded (a table never mentioned is absent and
/// behaves as all-ACCEPT, like a kernel where it was never loaded).
public struct RuleSet: Equatable, Sendable {
    public var tables: [Table]
    public init(tables: [Table] = []) { self.tables = tables }

    public func table(_ name: TableName) -> Table? { tables.first { $0.name == name } }
    public var ruleCount: Int { tables.reduce(0) { $0 + $1.chains.reduce(0) { $0 + $1.rules.count } } }
}

public enum ProtocolNames {
    static let byName: [String: UInt8] = [
        "all": 0, "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
        "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "udplite": 136,
    ]
    public static func parse(_ s: String) -> UInt8? {
        if let n = UInt8(s) { return n }
        return byName[s.lowercased()]
    }
    /// The name iptables-save prints.
    public static func name(_ p: UInt8) -> String {
        switch p {
        case 1: "icmp"
        case 2: "igmp"
        case 6: "tcp"
        case 17: "udp"
        case 47: "gre"
        case 50: "esp"
        case 51: "ah"
        case 132: "sctp"
        case 136: "udplite"
        default: "\(p)"
        }
    }
}

public enum ServiceNames {
    /// The /etc/services names rule sets commonly use (iptables resolves them at load time).
    static let tcpUDP: [String: UInt16] = [
        "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "bootps": 67,
        "bootpc": 68, "tftp": 69, "http": 80, "www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111,
        "auth": 113, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139,
        "imap": 143, "imap2": 143, "snmp": 161, "snmp-trap": 162, "bgp": 179, "ldap": 389, "https": 443,
        "microsoft-ds": 445, "isakmp": 500, "syslog": 514, "submission": 587, "ldaps": 636,
        "rsync": 873, "imaps": 993, "pop3s": 995, "openvpn": 1194, "mysql": 3306, "ipsec-nat-t": 4500,
        "sip": 5060, "postgresql": 5432, "http-alt": 8080, "webcache": 8080,
    ]
    public static func parse(_ s: String) -> UInt16? {
        if let n = UInt16(s) { return n }
        return tcpUDP[s.lowercased()]
    }
}

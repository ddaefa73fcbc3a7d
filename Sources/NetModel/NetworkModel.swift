import Diagnostics
import Wire

/// Interfaces are small integers: positions in `NetworkModel.interfaces`. `lo` is always 0.
public typealias InterfaceID = Int

/// What the kernel's FIB lookup (`ip route get`) decides for a packet.
public enum RouteDecision: Equatable, Sendable {
    /// Delivered to the box: one of its addresses (`local` route), a subnet broadcast address
    /// (`broadcast` route in table local) or 255.255.255.255. The interface is the one owning the
    /// address or subnet; for 255.255.255.255 it is the input interface.
    case local(interface: InterfaceID?)
    /// Sent out of `interface`; `gateway` is nil when the destination is on a connected subnet.
    case unicast(interface: InterfaceID, gateway: UInt32?)
    case blackhole     // kernel: EINVAL, silently dropped
    case unreachable   // kernel: EHOSTUNREACH, ICMP host unreachable
    case prohibit      // kernel: EACCES, ICMP administratively prohibited
    case noRoute       // no rule produced a route (ENETUNREACH, ICMP net unreachable)
}

public enum RouteType: UInt8, Sendable, CaseIterable {
    case unicast, local, broadcast, blackhole, unreachable, prohibit, `throw`

    public var keyword: String {
        switch self {
        case .unicast: "unicast"
        case .local: "local"
        case .broadcast: "broadcast"
        case .blackhole: "blackhole"
        case .unreachable: "unreachable"
        case .prohibit: "prohibit"
        case .throw: "throw"
        }
    }
}

/// Well-known table numbers (`/etc/iproute2/rt_tables`).
public enum RouteTableID {
    public static let `default`: UInt32 = 253
    public static let main: UInt32 = 254
    public static let local: UInt32 = 255
}

/// Scopes as the kernel numbers them (`rt_scope_t`).
public enum RouteScope {
    public static let universe: UInt8 = 0
    public static let site: UInt8 = 200
    public static let link: UInt8 = 253
    public static let host: UInt8 = 254
    public static let nowhere: UInt8 = 255
}

/// One FIB entry. Contains no reference types, so reading it on the per-packet path does no ARC.
public struct Route: Equatable, Sendable {
    public var table: UInt32
    public var type: RouteType
    public var network: UInt32
    public var length: UInt8
    public var gateway: UInt32?
    public var interface: InterfaceID?
    public var metric: UInt32
    /// `src`: the preferred source address the kernel puts in `ip route get`.
    public var preferredSource: UInt32?
    /// `proto`: 2 kernel (routes the kernel derives from addresses), 3 boot (`ip route add`).
    public var proto: UInt8
    public var scope: UInt8
    public var onlink: Bool
    /// Insertion order, the tie-break after metric among routes to the same prefix.
    var sequence: Int

    public var mask: UInt32 { length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(length)) }
    public var isKernel: Bool { proto == RouteProto.kernel }
}

enum RouteProto {
    static let kernel: UInt8 = 2
    static let boot: UInt8 = 3
}

/// One `ip rule`. Selectors not given match everything.
public struct PolicyRule: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        case lookup(UInt32)
        case blackhole, unreachable, prohibit
    }
    public var priority: UInt32
    public var invert: Bool = false
    public var from: IPv4Prefix?
    public var to: IPv4Prefix?
    public var mark: UInt32 = 0
    /// 0 when no fwmark is tested. As in the kernel, `fwmark 0` without a mask also gets mask 0,
    /// so it matches every packet.
    public var markMask: UInt32 = 0
    public var inputInterface: InterfaceID?
    /// Kept and rendered, but route() has no bound output device (forwarded packets and unbound
    /// sockets have none), so an `oif` rule never matches there, exactly like the kernel.
    public var outputInterface: InterfaceID?
    /// Compared with the packet's TOS & 0x1C (IPTOS_RT_MASK); 0 means any.
    public var tos: UInt8 = 0
    public var action: Action
    /// One of the kernel's three rules (0 local, 32766 main, 32767 default): not rendered.
    var isDefault: Bool = false

    @inline(__always)
    func matches(destination: UInt32, source: UInt32, inputInterface iif: InterfaceID, mark m: UInt32, tos t: UInt8) -> Bool {
        // fib_rule_match: every failed selector jumps to the same exit that applies `not`.
        var ok = true
        if let i = inputInterface, i != iif { ok = false }
        else if outputInterface != nil { ok = false }
        else if (mark ^ m) & markMask != 0 { ok = false }
        else if let f = from, !f.contains(source) { ok = false }
        else if let d = to, !d.contains(destination) { ok = false }
        else if tos != 0, tos != t & 0x1C { ok = false }
        return ok != invert
    }
}

public struct InterfaceAddress: Equatable, Sendable {
    public var address: UInt32
    public var length: UInt8
    /// `brd` when given explicitly; the subnet broadcast route exists regardless (length < 31).
    public var broadcast: UInt32?
    public var scope: UInt8
    public var label: String?
    /// Same subnet as an earlier address on the interface: no connected route of its own and
    /// never picked as a source address (kernel IFA_F_SECONDARY).
    public var secondary: Bool

    public init(address: UInt32, length: UInt8, broadcast: UInt32?, scope: UInt8, label: String?, secondary: Bool) {
        self.address = address
        self.length = length
        self.broadcast = broadcast
        self.scope = scope
        self.label = label
        self.secondary = secondary
    }

    public var mask: UInt32 { length == 0 ? 0 : ~UInt32(0) << (32 - UInt32(length)) }
}

public struct Interface: Equatable, Sendable {
    public var name: String
    public var up: Bool
    /// `type` from `ip link add`; nil for interfaces declared by being mentioned.
    public var kind: String?
    public var addresses: [InterfaceAddress]
}

/// What the kernel knows about a router, built from iproute2 and sysctl commands (see `parse`).
///
/// Queries (`route`, `isLocal`, `sourceAddress`, `primaryAddress`) read only flat arrays of plain
/// structs precomputed by `parse`: no allocation, no Dictionary, no String.
public struct NetworkModel: Sendable, CustomStringConvertible {
    public internal(set) var interfaces: [Interface]
    /// Every route of every table in insertion order, including the kernel's own.
    public internal(set) var routes: [Route]
    /// Policy rules in evaluation order (priority, then insertion).
    public internal(set) var rules: [PolicyRule]
    /// `net.ipv4.ip_forward` (= `net.ipv4.conf.all.forwarding`). Defaults to false, as in the
    /// kernel; the engine drops packets that would be forwarded while it is false.
    public var ipForward: Bool
    var index: RoutingIndex

    init(interfaces: [Interface], routes: [Route], rules: [PolicyRule], ipForward: Bool) {
        self.interfaces = interfaces
        self.routes = routes
        self.rules = rules
        self.ipForward = ipForward
        self.index = RoutingIndex(interfaces: interfaces, routes: routes, rules: rules)
        index.flatten()
    }

    public var interfaceNames: [String] { interfaces.map(\.name) }

    public func interfaceIndex(named name: String) -> InterfaceID? {
        interfaces.firstIndex { $0.name == name }
    }

    public func interfaceName(_ id: InterfaceID) -> String { interfaces[id].name }

    /// Like `ip route get`: rules in priority order, each looked-up table by longest prefix
    /// (then lowest metric, then first added); `throw` routes and tables without a match pass on
    /// to the next rule. `inputInterface` nil means a locally generated packet, which the kernel
    /// looks up with iif = lo (so `iif lo` rules match it). 255.255.255.255 is local without a
    /// lookup, as on the kernel's input path.
    public func route(destination: UInt32, source: UInt32 = 0, inputInterface: InterfaceID? = nil,
                      mark: UInt32 = 0, tos: UInt8 = 0) -> RouteDecision {
        if destination == 0xFFFF_FFFF { return .local(interface: inputInterface) }
        let result = index.resolve(destination: destination, source: source, inputInterface: inputInterface ?? 0,
                                   mark: mark, tos: tos, minScope: RouteScope.universe)
        switch result {
        case .route(let i):
            let r = index.entries[i]
            switch r.type {
            case .unicast:
                guard let dev = r.interface else { return .noRoute }  // parse guarantees a device
                return .unicast(interface: dev, gateway: r.gateway)
            case .local, .broadcast: return .local(interface: r.interface)
            case .blackhole: return .blackhole
            case .unreachable: return .unreachable
            case .prohibit: return .prohibit
            case .throw: return .noRoute  // resolve never returns a throw route
            }
        case .blackhole: return .blackhole
        case .unreachable: return .unreachable
        case .prohibit: return .prohibit
        case .none: return .noRoute
        }
    }

    /// True when table local has a `local` route for the address (kernel `inet_addr_type` ==
    /// RTN_LOCAL): every address of the box, all of 127/8, and `local` routes added by hand.
    public func isLocal(_ address: UInt32) -> Bool {
        guard index.localSlot >= 0,
              let i = index.lookup(slot: index.localSlot, address, minScope: RouteScope.universe) else { return false }
        return index.entries[i].type == .local
    }

    /// The first address added to the interface, nil when it has none.
    public func primaryAddress(of interface: InterfaceID) -> UInt32? {
        let r = index.addressRanges[interface]
        return r.isEmpty ? nil : index.addresses[r.lowerBound].address
    }

    /// The kernel's `inet_select_addr(dev, nexthop, RT_SCOPE_UNIVERSE)`, which MASQUERADE uses:
    /// the first primary global-scope address of `interface` in the same subnet as `gateway`,
    /// else its first primary global-scope address, else the first such address of any other
    /// interface. Pass the next hop: the gateway, or the destination when it is directly
    /// connected (`rt_nexthop`).
    public func sourceAddress(for interface: InterfaceID, gateway: UInt32?) -> UInt32? {
        var first: UInt32?
        for i in index.addressRanges[interface] {
            let a = index.addresses[i]
            guard a.usable else { continue }
            if let g = gateway, (g ^ a.address) & a.mask == 0 { return a.address }
            if first == nil { first = a.address }
        }
        if first != nil { return first }
        for a in index.addresses where a.usable { return a.address }
        return nil
    }

    public var description: String { render() }
}

/// The query structures: flat arrays only, so a lookup touches no reference counts.
struct RoutingIndex: Sendable {
    struct Group: Sendable { var mask: UInt32; var range: Range<Int> }
    struct Address: Sendable { var address: UInt32; var mask: UInt32; var usable: Bool }
    enum Result { case route(Int), blackhole, unreachable, prohibit, none }

    /// Routes grouped by table slot, then longest prefix first, then network, metric, insertion.
    var entries: [Route] = []
    /// `entries`' networks and scopes alone, which is what `groupLookup` searches: a 4-byte
    /// stride instead of the whole `Route`'s.
    var networks: [UInt32] = []
    var scopes: [UInt8] = []
    var groups: [Group] = []
    var tableIDs: [UInt32] = []
    var tableGroups: [Range<Int>] = []
    var rules: [PolicyRule] = []
    /// Table slot for each rule's `lookup`, -1 when the table is empty or the action is not a lookup.
    var ruleSlots: [Int] = []
    var localSlot = -1
    var addresses: [Address] = []
    var addressRanges: [Range<Int>] = []
    /// Per table slot, the answer of `lookup(minScope: universe)` as a partition of the address
    /// space (`flatten`): the starts of the intervals within which the covering prefixes do not
    /// change, ascending, the first always 0, and per interval the route (`entries` index, -1:
    /// none). One binary search per table instead of one per prefix length (a packet takes
    /// three or four lookups). Empty until `flatten` (the parser's temporary indexes skip it).
    var flatStarts: [[UInt32]] = []
    var flatRoutes: [[Int32]] = []

    init(interfaces: [Interface], routes: [Route], rules: [PolicyRule]) {
        tableIDs = Array(Set(routes.map(\.table))).sorted()
        func slot(_ t: UInt32) -> Int { tableIDs.firstIndex(of: t) ?? -1 }
        let slots = routes.map { slot($0.table) }
        let order = routes.indices.sorted { a, b in
            let x = routes[a], y = routes[b]
            if slots[a] != slots[b] { return slots[a] < slots[b] }
            if x.length != y.length { return x.length > y.length }
            if x.network != y.network { return x.network < y.network }
            if x.metric != y.metric { return x.metric < y.metric }
            return x.sequence < y.sequence
        }
        entries = order.map { routes[$0] }
        networks = entries.map(\.network)
        scopes = entries.map(\.scope)
        var i = 0
        for s in tableIDs.indices {
            let firstGroup = groups.count
            while i < entries.count, slots[order[i]] == s {
                let start = i, len = entries[i].length
                while i < entries.count, slots[order[i]] == s, entries[i].length == len { i += 1 }
                groups.append(Group(mask: entries[start].mask, range: start..<i))
            }
            tableGroups.append(firstGroup..<groups.count)
        }
        localSlot = slot(RouteTableID.local)
        self.rules = rules
        ruleSlots = rules.map { if case .lookup(let t) = $0.action { slot(t) } else { -1 } }
        for iface in interfaces {
            let start = addresses.count
            for a in iface.addresses {
                addresses.append(Address(address: a.address, mask: a.mask,
                                         usable: !a.secondary && a.scope == RouteScope.universe))
            }
            addressRanges.append(start..<addresses.count)
        }
    }

    /// fib_table_lookup: longest prefix first; within a prefix the first route in metric order
    /// whose scope is at least `minScope` (parse-time gateway checks need scope >= link).
    /// Returns an index into `entries`. Cost: with `minScope` universe (every lookup of a packet)
    /// one binary search in the table's flattened map, once `flatten` has run; otherwise (and in
    /// the parser's indexes) one binary search per prefix length in the table (`groupLookup`).
    func lookup(slot: Int, _ destination: UInt32, minScope: UInt8) -> Int? {
        if minScope == RouteScope.universe && slot < flatStarts.count {
            return flatStarts[slot].withUnsafeBufferPointer { starts in
                // The last start <= destination (starts[0] == 0). (A branch-free halving
                // compiled back to a branch: LLVM turns the select into a jump here.)
                var base = 0, n = starts.count
                while n > 1 {
                    let half = n >> 1
                    if starts[base &+ half] <= destination { base &+= half }
                    n &-= half
                }
                let r = flatRoutes[slot][base]
                return r < 0 ? nil : Int(r)
            }
        }
        return groupLookup(slot: slot, destination, minScope: minScope)
    }

    /// Builds `flatStarts` / `flatRoutes` from the groups: every prefix of a table starts an
    /// interval at its network and ends one after its last address; within an interval every
    /// address is covered by the same prefixes, so `groupLookup` of its start answers for all
    /// of it (scope universe, 0, admits every route).
    mutating func flatten() {
        flatStarts = []
        flatRoutes = []
        for slot in tableGroups.indices {
            var cuts: Set<UInt32> = [0]
            for g in tableGroups[slot] {
                let mask = groups[g].mask
                for i in groups[g].range {
                    cuts.insert(networks[i])
                    let last = networks[i] | ~mask
                    if last != UInt32.max { cuts.insert(last &+ 1) }
                }
            }
            var starts: [UInt32] = [], routes: [Int32] = []
            for s in cuts.sorted() {
                let r = Int32(groupLookup(slot: slot, s, minScope: RouteScope.universe) ?? -1)
                if let last = routes.last, last == r { continue }   // same answer: merge
                starts.append(s)
                routes.append(r)
            }
            flatStarts.append(starts)
            flatRoutes.append(routes)
        }
    }

    /// The search by prefix length: every `lookup` at parse time, and the reference `flatten`
    /// builds from.
    func groupLookup(slot: Int, _ destination: UInt32, minScope: UInt8) -> Int? {
        networks.withUnsafeBufferPointer { networks in
            groups.withUnsafeBufferPointer { groups in
                for g in tableGroups[slot] {
                    let group = groups[g]
                    let key = destination & group.mask
                    var lo = group.range.lowerBound, hi = group.range.upperBound
                    while lo < hi {
                        let mid = (lo &+ hi) >> 1
                        if networks[mid] < key { lo = mid &+ 1 } else { hi = mid }
                    }
                    while lo < group.range.upperBound, networks[lo] == key {
                        if scopes[lo] >= minScope { return lo }
                        lo &+= 1
                    }
                }
                return nil
            }
        }
    }

    func resolve(destination: UInt32, source: UInt32, inputInterface: InterfaceID, mark: UInt32, tos: UInt8,
                 minScope: UInt8) -> Result {
        for r in rules.indices {
            guard rules[r].matches(destination: destination, source: source, inputInterface: inputInterface,
                                   mark: mark, tos: tos) else { continue }
            switch rules[r].action {
            case .blackhole: return .blackhole
            case .unreachable: return .unreachable
            case .prohibit: return .prohibit
            case .lookup:
                let s = ruleSlots[r]
                guard s >= 0, let i = lookup(slot: s, destination, minScope: minScope) else { continue }
                if entries[i].type == .throw { continue }
                return .route(i)
            }
        }
        return .none
    }
}

/// Address types as xt_addrtype sees them (RTN_*), for `-m addrtype`.
public enum AddressKind: UInt8, Sendable {
    case unspec = 0, unicast, local, broadcast, anycast, multicast, blackhole, unreachable, prohibit, `throw`, nat, xresolve
}

extension NetworkModel {
    /// The kernel's `inet_dev_addr_type`: 0.0.0.0/8 and 255.255.255.255 are broadcast, 224/4
    /// multicast; otherwise the type of the route that table local (merged with main while no
    /// custom `ip rule` exists) gives for the address, UNICAST when none does. With `interface`
    /// (`--limit-iface-in/out`), a route through another device counts as UNICAST.
    public func addressKind(_ address: UInt32, interface: InterfaceID? = nil) -> AddressKind {
        if address >> 24 == 0 || address == 0xFFFF_FFFF { return .broadcast }
        if address >> 28 == 0xE { return .multicast }
        func kind(_ i: Int) -> AddressKind {
            let r = index.entries[i]
            if let interface, let dev = r.interface, dev != interface { return .unicast }
            switch r.type {
            case .local: return .local
            case .broadcast: return .broadcast
            case .blackhole: return .blackhole
            case .unreachable: return .unreachable
            case .prohibit: return .prohibit
            case .throw: return .throw
            case .unicast: return .unicast
            }
        }
        if index.localSlot >= 0, let i = index.lookup(slot: index.localSlot, address, minScope: RouteScope.universe) { return kind(i) }
        let customRules = rules.contains { $0.priority != 0 && $0.priority != 32766 && $0.priority != 32767 }
        if !customRules, let mainSlot = index.tableIDs.firstIndex(of: RouteTableID.main),
           let i = index.lookup(slot: mainSlot, address, minScope: RouteScope.universe) {
            return kind(i)
        }
        return .unicast
    }
}

extension NetworkModel {
    /// A lookup in one table only, skipping the policy rules (VNS3 LOOKUP). `.noRoute` when the
    /// table is empty or has no matching route.
    public func route(destination: UInt32, inTable table: UInt32) -> RouteDecision {
        guard let slot = index.tableIDs.firstIndex(of: table),
              let i = index.lookup(slot: slot, destination, minScope: RouteScope.universe) else { return .noRoute }
        let r = index.entries[i]
        switch r.type {
        case .unicast: return r.interface.map { .unicast(interface: $0, gateway: r.gateway) } ?? .noRoute
        case .local, .broadcast: return .local(interface: r.interface)
        case .blackhole: return .blackhole
        case .unreachable: return .unreachable
        case .prohibit: return .prohibit
        case .throw: return .noRoute
        }
    }
}

import Foundation

/// The kernel rules that hand traffic to Sluice (`--install-hooks`), installed at start and
/// removed at exit. One round trip per packet: Sluice runs the whole path (PREROUTING, the
/// routing decision, INPUT or FORWARD, POSTROUTING) at the first hook a packet reaches:
///
///     -t raw -N SLUICE-PRE
///     -t raw -A SLUICE-PRE -j CT --notrack
///     -t raw -A SLUICE-PRE -j NFQUEUE --queue-num N --queue-bypass     (or --queue-balance N:M)
///     -t raw -I PREROUTING 1 ! -i lo -j SLUICE-PRE
///     -t raw -N SLUICE-OUT
///     -t raw -A SLUICE-OUT -j CT --notrack
///     -t raw -A SLUICE-OUT -m mark --mark M/M -j RETURN                (Sluice's own packets)
///     -t raw -A SLUICE-OUT -j NFQUEUE --queue-num N --queue-bypass
///     -t raw -I OUTPUT 1 -j SLUICE-OUT
///
/// - raw is the first table (priority -300), before the kernel's conntrack and routing: a DNAT
///   that Sluice writes into the packet is what the kernel routes.
/// - CT --notrack keeps the kernel's conntrack (and any nf_nat loaded by other tools) out of
///   the way: NAT is Sluice's, the kernel must not track, undo or re-translate it.
/// - `--queue-bypass`: traffic flows when no Sluice is bound to the queue.
/// - Loopback traffic is seen once, at OUTPUT (the engine runs its whole loop: OUTPUT,
///   POSTROUTING, PREROUTING on lo, INPUT), not again when it re-enters on lo.
/// - Packets Sluice sends itself (REJECT answers, COPY clones) carry the inject mark and pass.
///
/// Source NAT (SNAT, MASQUERADE, the reply side of DNAT) rewrites the source before the
/// kernel's input route check, so the box must accept its own addresses as sources on
/// forwarded packets: `net.ipv4.conf.all.accept_local=1` (set by --install-hooks and restored
/// at exit) and `rp_filter` not strict (1) on interfaces that receive such traffic.
public struct Hooks {
    public var iptables = "iptables"
    public var firstQueue: UInt16
    public var lastQueue: UInt16
    public var injectMark: UInt32
    public var output = true
    public var acceptLocal = true
    /// LOOKUP inline: route table -> mark; an `ip rule fwmark M lookup T` is added for each
    /// that the kernel does not have yet (and removed at exit).
    public var routeMarks: [UInt32: UInt32] = [:]
    var savedAcceptLocal: String?
    var addedRouteRules: [[String]] = []

    public init(firstQueue: UInt16, lastQueue: UInt16, injectMark: UInt32) {
        self.firstQueue = firstQueue
        self.lastQueue = lastQueue
        self.injectMark = injectMark
    }

    var queueTarget: [String] {
        let q = firstQueue == lastQueue ? ["--queue-num", "\(firstQueue)"] : ["--queue-balance", "\(firstQueue):\(lastQueue)"]
        return ["-j", "NFQUEUE"] + q + ["--queue-bypass"]
    }

    /// The rules as iptables command lines (also what the README tells operators to add).
    public var commands: [[String]] {
        let mark = String(format: "0x%x/0x%x", injectMark, injectMark)
        var c: [[String]] = [
            ["-t", "raw", "-N", "SLUICE-PRE"],
            ["-t", "raw", "-A", "SLUICE-PRE", "-j", "CT", "--notrack"],
            ["-t", "raw", "-A", "SLUICE-PRE"] + queueTarget,
            ["-t", "raw", "-I", "PREROUTING", "1", "!", "-i", "lo", "-j", "SLUICE-PRE"],
        ]
        if output {
            c += [
                ["-t", "raw", "-N", "SLUICE-OUT"],
                ["-t", "raw", "-A", "SLUICE-OUT", "-j", "CT", "--notrack"],
                ["-t", "raw", "-A", "SLUICE-OUT", "-m", "mark", "--mark", mark, "-j", "RETURN"],
                ["-t", "raw", "-A", "SLUICE-OUT"] + queueTarget,
                ["-t", "raw", "-I", "OUTPUT", "1", "-j", "SLUICE-OUT"],
            ]
        }
        return c
    }

    public mutating func install() throws {
        remove()  // leftovers of a run that was killed
        for c in commands { try Self.run([iptables, "-w"] + c) }
        if acceptLocal {
            let path = "/proc/sys/net/ipv4/conf/all/accept_local"
            savedAcceptLocal = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            try? "1\n".write(toFile: path, atomically: false, encoding: .utf8)
        }
        let existing = (try? Self.run(["ip", "-4", "rule", "show"])) ?? ""
        for (table, mark) in routeMarks.sorted(by: { $0.key < $1.key }) {
            let hex = String(format: "0x%x", mark)
            if existing.contains("fwmark \(hex) lookup \(table)") { continue }
            let rule = ["fwmark", hex, "lookup", "\(table)"]
            try Self.run(["ip", "rule", "add"] + rule)
            addedRouteRules.append(rule)
        }
    }

    /// Removes the rules (each step may fail when a rule is already gone).
    public mutating func remove() {
        for (builtin, chain) in [("PREROUTING", "SLUICE-PRE"), ("OUTPUT", "SLUICE-OUT")] {
            let filter = builtin == "PREROUTING" ? ["!", "-i", "lo"] : []
            while (try? Self.run([iptables, "-w", "-t", "raw", "-D", builtin] + filter + ["-j", chain])) != nil {}
            _ = try? Self.run([iptables, "-w", "-t", "raw", "-F", chain])
            _ = try? Self.run([iptables, "-w", "-t", "raw", "-X", chain])
        }
        for rule in addedRouteRules { _ = try? Self.run(["ip", "rule", "del"] + rule) }
        addedRouteRules = []
        if let saved = savedAcceptLocal {
            try? "\(saved)\n".write(toFile: "/proc/sys/net/ipv4/conf/all/accept_local", atomically: false, encoding: .utf8)
            savedAcceptLocal = nil
        }
    }

    @discardableResult
    static func run(_ args: [String]) throws -> String {
        let (status, output) = spawnAndWait(args)
        guard status == 0 else { throw LiveNetworkError(description: "\(args.joined(separator: " ")): \(output)") }
        return output
    }
}

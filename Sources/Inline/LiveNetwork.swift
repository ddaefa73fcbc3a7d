import Foundation
import NetModel
import Diagnostics

/// The network model of the namespace Sluice runs in, read from the kernel (`ip -4 addr`,
/// `ip -4 route show table all`, `ip -4 rule`, ip_forward) and written in the model's own
/// iproute2 syntax, so inline and replay share one parser and one routing code path.
/// Read at start and on every reload; routes changed in between are seen at the next reload.
public enum LiveNetwork {
    public static func snapshotText() throws -> String {
        var lines: [String] = ["# read from the kernel by sluice run"]
        // Every link, so interfaces without an address still get a name.
        for l in try run(["ip", "-o", "link", "show"]).split(separator: "\n") {
            let parts = l.split(separator: ":", maxSplits: 2)
            guard parts.count >= 2 else { continue }
            var name = parts[1].trimmingCharacters(in: .whitespaces)
            if let at = name.firstIndex(of: "@") { name = String(name[..<at]) }
            if name == "lo" || name.isEmpty { continue }
            lines.append("ip link add name \(name) type veth")
            if l.contains(",UP") || l.contains("<UP") { lines.append("ip link set dev \(name) up") }
        }
        for l in try run(["ip", "-o", "-4", "addr", "show"]).split(separator: "\n") {
            // "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\       valid_lft ..."
            let w = l.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard w.count >= 4, w[2] == "inet" else { continue }
            let dev = w[1]
            if dev == "lo" { continue }
            var cmd = "ip addr add \(w[3])"
            var i = 4
            while i < w.count {
                switch w[i] {
                case "brd": if i + 1 < w.count { cmd += " brd \(w[i + 1])" }; i += 2
                case "scope": if i + 1 < w.count { cmd += " scope \(w[i + 1])" }; i += 2
                default: i += 1
                }
            }
            lines.append(cmd + " dev \(dev)")
        }
        for l in try run(["ip", "-4", "route", "show", "table", "all"]).split(separator: "\n") {
            let w = l.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard !w.isEmpty else { continue }
            // The local table and the prefix routes of addresses are what `ip addr add` makes.
            if w.contains("table") && w[(w.firstIndex(of: "table")! + 1)...].first == "local" { continue }
            if w.contains("proto") && w[(w.firstIndex(of: "proto")! + 1)...].first == "kernel" { continue }
            var kept: [String] = []
            var i = 0
            while i < w.count {
                switch w[i] {
                case "linkdown", "dead", "offload", "trap", "rt_offload", "rt_trap", "pervasive", "notify": i += 1
                case "expires", "pref", "mtu", "advmss", "hoplimit", "initcwnd", "initrwnd", "quickack", "features", "rtt", "rttvar", "window", "cwnd", "ssthresh", "reordering", "realm", "nhid":
                    i += 2
                default: kept.append(w[i]); i += 1
                }
            }
            lines.append("ip route add " + kept.joined(separator: " "))
        }
        for l in try run(["ip", "-4", "rule", "show"]).split(separator: "\n") {
            // "32765:\tfrom all fwmark 0x1 lookup 100"
            guard let colon = l.firstIndex(of: ":") else { continue }
            let pref = l[..<colon].trimmingCharacters(in: .whitespaces)
            let rest = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if (pref == "0" && rest == "from all lookup local") || (pref == "32766" && rest == "from all lookup main")
                || (pref == "32767" && rest == "from all lookup default") { continue }
            lines.append("ip rule add pref \(pref) " + rest.replacingOccurrences(of: "\t", with: " "))
        }
        let forward = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0"
        lines.append("sysctl net.ipv4.ip_forward=\(forward)")
        return lines.joined(separator: "\n") + "\n"
    }

    public static func snapshot() throws -> NetworkModel {
        let text = try snapshotText()
        do {
            return try NetworkModel.parse(text, file: "<kernel>")
        } catch {
            throw LiveNetworkError(description: "the kernel's network could not be modelled: \(error.description)\n\(text)")
        }
    }

    static func run(_ args: [String]) throws -> String {
        let (status, output) = spawnAndWait(args)
        guard status == 0 else { throw LiveNetworkError(description: "\(args.joined(separator: " ")) failed: \(output)") }
        return output
    }
}

public struct LiveNetworkError: Error, CustomStringConvertible {
    public let description: String
}

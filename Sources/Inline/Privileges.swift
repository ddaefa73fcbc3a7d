#if canImport(Glibc)
import Glibc
#endif
import CNetfilterQueue

/// Capabilities after start. Once the queues, the raw socket (with its SO_MARK) and the
/// control socket are open, what stays:
/// - CAP_NET_ADMIN, always: nfnetlink checks it on every message, verdicts included, for the
///   sending thread as well as the socket's opener (netlink_net_capable);
/// - CAP_NET_RAW too with --install-hooks, to remove the iptables rules and ip rules at exit
///   (iptables-legacy needs it) and restore accept_local.
/// Injected packets go over the raw socket opened before the drop (no check on send).
/// The bounding set is reduced to the same, so a helper Sluice runs (iptables, ip) cannot
/// regain more. The user stays root (files Sluice reads on reload, the control socket path);
/// run it under a dedicated user with ambient capabilities to go further (contrib/).
public enum Privileges {
    static let capNetAdmin: UInt32 = 12
    static let capNetRaw: UInt32 = 13

    /// Capabilities are per thread: call it from the thread that then starts the workers.
    /// Returns a description of what was kept, or nil when capabilities could not be changed.
    @discardableResult
    public static func dropAfterStart(keepNetAdmin: Bool) -> String? {
        let keep: UInt32 = keepNetAdmin ? (1 << capNetAdmin) | (1 << capNetRaw) : (1 << capNetAdmin)
        // Bounding set first (needs CAP_SETPCAP, which we still hold).
        for cap in 0 ..< 64 where !(cap < 32 && keep & (UInt32(1) << UInt32(cap)) != 0) {
            _ = sluice_capbset_drop(Int32(cap))
        }
        guard sluice_set_caps(keep, keep) == 0 else { return nil }
        return keepNetAdmin ? "CAP_NET_ADMIN CAP_NET_RAW" : "CAP_NET_ADMIN"
    }
}

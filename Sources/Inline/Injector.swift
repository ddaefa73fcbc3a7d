#if canImport(Glibc)
import Glibc
#endif

/// Sends the packets the box itself emits inline: REJECT's ICMP error or TCP reset, and COPY
/// clones. A raw IPv4 socket with IP_HDRINCL: the packet goes out as built, routed to the
/// address given to `sendto` as its next hop (raw sockets with IP_HDRINCL route with
/// FLOWI_FLAG_KNOWN_NH, so an on-link `to` is the neighbour even when the header's destination
/// is another host: what the kernel's TEE does with `--gateway`).
///
/// The socket's packets carry `mark` (SO_MARK): the queueing rules let them pass without a
/// second trip through Sluice, since the engine already ran REJECT's answer through OUTPUT
/// and POSTROUTING.
public final class Injector: @unchecked Sendable {
    let fd: Int32
    public private(set) var sent: UInt64 = 0
    public private(set) var failed: UInt64 = 0

    public init(mark: UInt32) throws(QueueError) {
        let s = socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard s >= 0 else { throw QueueError("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)") }
        var m = mark
        if setsockopt(s, SOL_SOCKET, SO_MARK, &m, 4) != 0 {
            let e = errno
            close(s)
            throw QueueError("SO_MARK on the raw socket", errno: e)
        }
        fd = s
    }

    deinit { close(fd) }

    /// Sends the raw IPv4 packet `bytes` with `nextHop` (host order) as its next hop.
    public func send(_ bytes: UnsafeRawBufferPointer, nextHop: UInt32) {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_addr.s_addr = nextHop.bigEndian
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if r < 0 { failed &+= 1 } else { sent &+= 1 }
    }
}

/// A connection tuple as netfilter keys it: addresses, L4 identifiers, protocol. 16 bytes,
/// asserted in a test. For ICMP queries `sourcePort` is the identifier and `destinationPort`
/// is type << 8 | code (nf_conntrack_tuple's icmp.id / icmp.type,code).
public struct FlowKey: Hashable, Sendable, CustomStringConvertible {
    public var source: UInt32
    public var destination: UInt32
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var proto: UInt8
    @usableFromInline var pad0: UInt8 = 0
    @usableFromInline var pad1: UInt16 = 0

    @inlinable
    public init(source: UInt32, destination: UInt32, sourcePort: UInt16, destinationPort: UInt16, proto: UInt8) {
        self.source = source; self.destination = destination
        self.sourcePort = sourcePort; self.destinationPort = destinationPort; self.proto = proto
    }

    /// The tuple seen from the other end (ports and addresses swapped).
    @inlinable
    public var reversed: FlowKey {
        FlowKey(source: destination, destination: source, sourcePort: destinationPort, destinationPort: sourcePort, proto: proto)
    }

    /// The same value for both directions of a flow (gopacket's FastHash idea): the smaller
    /// endpoint first.
    @inlinable
    public var canonical: FlowKey {
        let a = UInt64(source) << 16 | UInt64(sourcePort)
        let b = UInt64(destination) << 16 | UInt64(destinationPort)
        return a <= b ? self : reversed
    }

    public var description: String {
        "\(proto) \(IPv4Address(source)):\(sourcePort) > \(IPv4Address(destination)):\(destinationPort)"
    }
}

import CPcap

/// libpcap as the reference reader for the corpus tests. Every call into libpcap in this test
/// target is in this file.
enum Libpcap {
    struct Packet {
        var capturedLength: Int
        var originalLength: Int
        var timestampNanos: Int64
        /// libpcap's buffer: valid only during the callback.
        var bytes: UnsafeRawBufferPointer
    }

    enum Outcome: Equatable {
        case finished(packets: Int)
        /// pcap_open_offline failed: libpcap does not read this file at all.
        case refused(String)
        /// pcap_next_ex failed after `packets` packets (e.g. a second link type in a pcapng file).
        case stopped(packets: Int, String)
    }

    /// Reads `path` with nanosecond timestamps (libpcap scales micro- and other resolutions up)
    /// and hands each packet to `body` with its 0-based index.
    static func forEachPacket(path: String, _ body: (Int, Packet) -> Void) -> Outcome {
        var errorBuffer = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let handle = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO),
                                                                   &errorBuffer) else {
            return .refused(errorBuffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        defer { pcap_close(handle) }
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        var count = 0
        while true {
            switch pcap_next_ex(handle, &header, &data) {
            case 1:
                guard let h = header?.pointee else { continue }
                let nanos = Int64(h.ts.tv_sec) * 1_000_000_000 + Int64(h.ts.tv_usec)  // tv_usec holds ns here
                body(count, Packet(capturedLength: Int(h.caplen), originalLength: Int(h.len), timestampNanos: nanos,
                                   bytes: UnsafeRawBufferPointer(start: data, count: Int(h.caplen))))
                count += 1
            case PCAP_ERROR_BREAK:  // -2: end of file
                return .finished(packets: count)
            default:
                return .stopped(packets: count, String(cString: pcap_geterr(handle)))
            }
        }
    }
}

import Capture
import Wire
import FuzzSupport

/// Input: a capture file's bytes (classic pcap or pcapng). Every record the indexer accepts is
/// read and parsed with its interface's link type.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let file = try? CaptureFile(bytes: bytes, name: "fuzz.pcap") else { return 0 }
    var p = ParsedPacket()
    for i in file.records.indices {
        let r = file.records[i]
        precondition(r.offset >= 0 && r.capturedLength >= 0 && r.offset + r.capturedLength <= size,
                     "record \(i) outside the file")
        precondition(file.interfaces.indices.contains(r.interface), "record \(i): no interface \(r.interface)")
        guard let linkType = file.interfaces[r.interface].linkType else { continue }
        file.withFrame(i) { frame in
            _ = PacketParser.parse(frame, linkType: linkType, wireLength: r.originalLength, into: &p)
        }
    }
    return 0
}

@_cdecl("FuzzCapture_main")
func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv, fuzz)
}

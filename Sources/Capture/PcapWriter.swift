#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Wire

/// Writes a classic pcap file, little-endian, micro- or nanosecond timestamps. Records are
/// collected in memory and written with one fwrite per MiB, so `append` costs a memcpy and
/// no allocation once the buffer has grown.
public final class PcapWriter {
    public enum Resolution: Sendable {
        case microsecond, nanosecond
    }

    public let path: String
    public let linkTypeRaw: UInt32
    public let resolution: Resolution
    public let snapLength: UInt32
    /// Records appended so far.
    public private(set) var count = 0

    static let flushThreshold = 1 << 20
    private var file: UnsafeMutablePointer<FILE>?
    private var buffer: [UInt8] = []

    /// Creates (truncates) `path` now, so a bad path fails here rather than at the first flush.
    public init(path: String, linkTypeRaw: UInt32, resolution: Resolution = .microsecond,
                snapLength: UInt32 = 262_144) throws(CaptureError) {
        guard let file = fopen(path, "wb") else { throw .writeFailed(file: path, reason: errnoText(errno)) }
        self.file = file
        self.path = path
        self.linkTypeRaw = linkTypeRaw
        self.resolution = resolution
        self.snapLength = snapLength
        buffer.reserveCapacity(Self.flushThreshold + 65_536)
        buffer += Self.fileHeader(linkTypeRaw: linkTypeRaw, resolution: resolution, snapLength: snapLength)
    }

    deinit {
        // Best effort for a writer nobody closed; errors here have no one to go to.
        try? close()
    }

    /// Appends one record. Bytes past `snapLength` are cut (caplen < len, as a capture would);
    /// `originalLength` defaults to the frame's length.
    public func append(frame: UnsafeRawBufferPointer, timestampNanos: Int64, originalLength: Int? = nil) throws(CaptureError) {
        guard file != nil else { throw .writeFailed(file: path, reason: "writer is closed") }
        buffer(frame, timestampNanos, originalLength)
        if buffer.count >= Self.flushThreshold { try flush() }
    }

    public func append(frame: [UInt8], timestampNanos: Int64, originalLength: Int? = nil) throws(CaptureError) {
        // Array.withUnsafeBytes is rethrows (untyped), so the throwing part stays outside it.
        guard file != nil else { throw .writeFailed(file: path, reason: "writer is closed") }
        frame.withUnsafeBytes { buffer($0, timestampNanos, originalLength) }
        if buffer.count >= Self.flushThreshold { try flush() }
    }

    private func buffer(_ frame: UnsafeRawBufferPointer, _ timestampNanos: Int64, _ originalLength: Int?) {
        Self.appendRecord(to: &buffer, frame: frame, timestampNanos: timestampNanos, originalLength: originalLength,
                          resolution: resolution, snapLength: snapLength)
        count += 1
    }

    /// Hands everything buffered to the file.
    public func flush() throws(CaptureError) {
        guard let file else { return }
        let written = buffer.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let failed = written != buffer.count || fflush(file) != 0
        buffer.removeAll(keepingCapacity: true)
        if failed { throw .writeFailed(file: path, reason: errnoText(errno)) }
    }

    /// Flushes and closes; later calls do nothing, later appends throw.
    public func close() throws(CaptureError) {
        guard let file else { return }
        defer { self.file = nil }
        do {
            try flush()
        } catch {
            _ = fclose(file)
            throw error
        }
        if fclose(file) != 0 { throw .writeFailed(file: path, reason: errnoText(errno)) }
    }

    // MARK: encoding, shared with tests and generators

    public static func fileHeader(linkTypeRaw: UInt32, resolution: Resolution, snapLength: UInt32) -> [UInt8] {
        var header: [UInt8] = []
        header.reserveCapacity(PcapLayout.fileHeaderLength)
        header.appendLE32(resolution == .nanosecond ? CaptureIndexer.pcapMagicNano : CaptureIndexer.pcapMagicMicro)
        header.appendLE16(2)  // version 2.4
        header.appendLE16(4)
        header.appendLE32(0)  // thiszone
        header.appendLE32(0)  // sigfigs
        header.appendLE32(snapLength)
        header.appendLE32(linkTypeRaw)
        return header
    }

    /// Appends a 16-byte record header and the captured bytes. Timestamps before the epoch or
    /// after 2106 do not fit the unsigned 32-bit seconds field and are clamped to its ends.
    public static func appendRecord(to out: inout [UInt8], frame: UnsafeRawBufferPointer, timestampNanos: Int64,
                                    originalLength: Int? = nil, resolution: Resolution, snapLength: UInt32) {
        let perSecond: Int64 = 1_000_000_000
        var seconds = timestampNanos / perSecond
        var nanos = timestampNanos % perSecond
        if nanos < 0 { seconds -= 1; nanos += perSecond }  // floor, so nanos is in 0 ..< 1e9
        if seconds < 0 { seconds = 0; nanos = 0 }
        if seconds > Int64(UInt32.max) { seconds = Int64(UInt32.max); nanos = perSecond - 1 }
        let capturedLength = min(frame.count, Int(snapLength))
        let originalLength = min(max(originalLength ?? frame.count, capturedLength), Int(UInt32.max))

        out.appendLE32(UInt32(seconds))
        out.appendLE32(UInt32(resolution == .nanosecond ? nanos : nanos / 1000))
        out.appendLE32(UInt32(capturedLength))
        out.appendLE32(UInt32(originalLength))
        out.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[0 ..< capturedLength]))
    }

    /// A whole file in memory.
    public static func encode(frames: [(bytes: [UInt8], timestampNanos: Int64)], linkTypeRaw: UInt32,
                              resolution: Resolution = .microsecond, snapLength: UInt32 = 262_144) -> [UInt8] {
        var out = fileHeader(linkTypeRaw: linkTypeRaw, resolution: resolution, snapLength: snapLength)
        for frame in frames {
            frame.bytes.withUnsafeBytes {
                appendRecord(to: &out, frame: $0, timestampNanos: frame.timestampNanos,
                             resolution: resolution, snapLength: snapLength)
            }
        }
        return out
    }
}

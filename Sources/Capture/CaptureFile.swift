#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Wire

/// Which container a file is, and for classic pcap how its headers are encoded.
public enum CaptureFormat: Equatable, Sendable {
    case pcap(bigEndian: Bool, nanosecond: Bool)
    case pcapng
}

/// One interface a packet can arrive on: the single implied interface of a classic pcap file,
/// or one IDB of a pcapng file (ids are per section; `CaptureRecord.interface` is global).
public struct CaptureInterface: Equatable, Sendable {
    /// The LINKTYPE_ value (low 16 bits of the header field; FCS bits are masked off).
    public var linkTypeRaw: UInt32
    /// nil when Wire does not decode this link type.
    public var linkType: LinkType?
    public var snapLength: UInt32
    public var name: String?
    public var timestampUnitsPerSecond: UInt64

    public init(linkTypeRaw: UInt32, snapLength: UInt32, name: String? = nil, timestampUnitsPerSecond: UInt64) {
        self.linkTypeRaw = linkTypeRaw
        self.linkType = LinkType(rawValue: linkTypeRaw)
        self.snapLength = snapLength
        self.name = name
        self.timestampUnitsPerSecond = timestampUnitsPerSecond
    }
}

/// One packet: where its captured bytes are in the file and what the record header said.
/// Invariant: `offset + capturedLength <= file size` (checked once while indexing).
public struct CaptureRecord: Equatable, Sendable {
    public var offset: Int
    public var capturedLength: Int
    public var originalLength: Int
    /// Nanoseconds since the Unix epoch, converted arithmetically from the file's units.
    public var timestampNanos: Int64
    /// Index into `CaptureFile.interfaces`.
    public var interface: Int

    public init(offset: Int, capturedLength: Int, originalLength: Int, timestampNanos: Int64, interface: Int) {
        self.offset = offset
        self.capturedLength = capturedLength
        self.originalLength = originalLength
        self.timestampNanos = timestampNanos
        self.interface = interface
    }
}

/// Why a file cannot be read at all. Damage after a valid header is a warning, not an error.
public enum CaptureError: Error, Equatable, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case unknownMagic(file: String, magic: UInt32)
    case badHeader(file: String, reason: String)
    case writeFailed(file: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): "\(file): cannot read: \(reason)"
        case let .unknownMagic(file, magic):
            "\(file): not a pcap or pcapng file (magic 0x\(String(magic, radix: 16, uppercase: false)))"
        case let .badHeader(file, reason): "\(file): bad file header: \(reason)"
        case let .writeFailed(file, reason): "\(file): cannot write: \(reason)"
        }
    }
}

/// A capture file loaded into memory once and indexed once. Frames are read in place: the
/// records hold offsets into the one buffer this object owns, so reading a frame allocates
/// nothing. Immutable after init, hence safe to share across threads.
public final class CaptureFile: @unchecked Sendable {
    public let name: String
    public let format: CaptureFormat
    public let interfaces: [CaptureInterface]
    public let records: [CaptureRecord]
    /// Damage found while indexing (truncation, bad block lengths, invalid timestamps).
    /// Record numbers in messages are 0-based indices into `records`.
    public let warnings: [String]

    @usableFromInline let storage: UnsafeMutableRawBufferPointer

    /// Reads the whole file with one allocation (regular files) and indexes it.
    public static func open(path: String) throws(CaptureError) -> CaptureFile {
        try CaptureFile(adopting: readWholeFile(path), name: path)
    }

    /// Copies `bytes` once and indexes them; `name` is used in errors.
    public convenience init(bytes: [UInt8], name: String) throws(CaptureError) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
        try self.init(adopting: storage, name: name)
    }

    /// Takes ownership of `storage`: freed in deinit, or here if the header is rejected
    /// (a throwing class init does not run deinit).
    private init(adopting storage: UnsafeMutableRawBufferPointer, name: String) throws(CaptureError) {
        let index: CaptureIndexer
        do {
            index = try CaptureIndexer.index(UnsafeRawBufferPointer(storage), name: name)
        } catch {
            storage.deallocate()
            throw error
        }
        self.storage = storage
        self.name = name
        self.format = index.format
        self.interfaces = index.interfaces
        self.records = index.records
        self.warnings = index.warnings.messages
    }

    deinit { storage.deallocate() }

    /// The captured bytes of `records[index]`. Traps only on an index outside `records`.
    @inlinable
    public func withFrame<R>(_ index: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let record = records[index]
        return try body(UnsafeRawBufferPointer(storage).slice(record.offset, record.capturedLength))
    }

    /// The whole file, for hot loops that slice `records[i].offset ..< + capturedLength` themselves.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(storage))
    }
}

func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

/// The file's bytes in a fresh allocation sized by fstat; pipes and other files without a size
/// are read in chunks and copied once.
private func readWholeFile(_ path: String) throws(CaptureError) -> UnsafeMutableRawBufferPointer {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .unreadable(file: path, reason: errnoText(errno)) }
    defer { _ = close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw .unreadable(file: path, reason: errnoText(errno)) }

    if (info.st_mode & S_IFMT) == S_IFREG {
        let size = Int(info.st_size)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        var filled = 0
        while filled < size {
            let n = read(fd, storage.baseAddress! + filled, size - filled)
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                let reason = errnoText(errno)
                storage.deallocate()
                throw .unreadable(file: path, reason: reason)
            }
            if n == 0 { break }  // the file shrank since fstat: index what is there
            filled += n
        }
        guard filled < size else { return storage }
        let shrunk = UnsafeMutableRawBufferPointer.allocate(byteCount: filled, alignment: 16)
        shrunk.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[0 ..< filled]))
        storage.deallocate()
        return shrunk
    }

    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw .unreadable(file: path, reason: errnoText(errno)) }
        if n == 0 { break }
        bytes.append(contentsOf: chunk[0 ..< n])
    }
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
    bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
    return storage
}

import Logging

/// LOG/NFLOG hits go through swift-log (label `sluice.log`): one kernel-style line per hit, the
/// rule's --log-level as the log level. Replay's handler appends them to `log.txt` as
/// `INDEX line`; an embedding program can install its own handler instead.
struct LogFileHandler: LogHandler {
    let file: TextFile
    var logLevel: Logger.Level = .debug
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        let index = metadata?["packet"].map { "\($0) " } ?? ""
        try? self.file.write(index + message.description + "\n")
    }
}

extension Logger.Level {
    /// Syslog levels of LOG's --log-level (0 emerg ... 7 debug).
    init(syslog: Int) {
        switch syslog {
        case ...2: self = .critical
        case 3: self = .error
        case 4: self = .warning
        case 5: self = .notice
        case 6: self = .info
        default: self = .debug
        }
    }
}

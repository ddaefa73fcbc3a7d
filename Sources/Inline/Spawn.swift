#if canImport(Glibc)
import Glibc
#endif

/// Runs a program (found on PATH) and returns its exit status and its standard output and
/// error, interleaved. posix_spawn and waitpid directly: Foundation's Process waits for
/// SIGCHLD, which never comes when the parent left SIGCHLD ignored (as `setsid sh -c` under
/// some harnesses does), so `sluice run` would hang at start.
func spawnAndWait(_ args: [String]) -> (status: Int32, output: String) {
    signal(SIGCHLD, SIG_DFL)
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return (-1, "pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addclose(&actions, fds[0])
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, args[0], &actions, nil, &cargs, environ)
    close(fds[1])
    guard rc == 0 else { close(fds[0]); return (-1, "\(args[0]): \(String(cString: strerror(rc)))") }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n > 0 { out += buf[0 ..< n]; continue }
        if n < 0 && errno == EINTR { continue }
        break
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exited = status & 0x7F == 0
    return (exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), String(decoding: out, as: UTF8.self))
}

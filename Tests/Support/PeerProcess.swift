import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A test peer (an emulator, a fake token endpoint) run as a child process on a loopback port.
///
/// Output goes to a log file; start-up waits until the port accepts connections. The process is
/// SIGKILLed in `deinit` (or by `stop()`) — some peers ignore SIGTERM while serving.
package final class PeerProcess: @unchecked Sendable {
    package let name: String
    package let port: Int
    package let logPath: String
    private let process: Process

    /// - Parameters:
    ///   - executable: the program (e.g. `try testPython()`).
    ///   - arguments: its arguments; use `port` from `PersistorProcess.freePort()` in them.
    ///   - environment: added to the inherited environment.
    package init(
        _ name: String, executable: String, arguments: [String], port: Int,
        environment: [String: String] = [:], startupTimeout: Double = 30
    ) throws {
        self.name = name
        self.port = port
        let directory = try TemporaryDirectory("persistor-peer-\(name)")
        logPath = directory.path + "/\(name).log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath)
        else { throw TestFailure("cannot create \(logPath)") }
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        let deadline = Date().addingTimeInterval(startupTimeout)
        while !Self.accepts(port: port) {
            guard process.isRunning, Date() < deadline else {
                stop()
                throw TestFailure("\(name) did not listen on 127.0.0.1:\(port) within \(startupTimeout) s; its log:\n\(self.log)")
            }
            usleep(50_000)
        }
    }

    deinit { stop() }

    package var isRunning: Bool { process.isRunning }
    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Kills the peer (SIGKILL) and reaps it.
    package func stop() {
        guard process.isRunning else { return }
        _ = Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    package static func accepts(port: Int) -> Bool {
        guard let client = try? RawHTTPClient(port: port, timeout: 1) else { return false }
        client.close()
        return true
    }
}

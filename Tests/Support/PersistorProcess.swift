import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Process ids of servers started by this test process and not yet reaped; killed at exit so a
/// test that leaks its `PersistorProcess` still leaves no orphan behind.
private let livePersistorPIDs = LockedBox(Set<Int32>())
private let killLiveServersAtExit: Void = {
    atexit {
        for pid in livePersistorPIDs.get() { _ = Glibc.kill(pid, SIGKILL) }
    }
}()

/// The built `persistor` executable, run as a child process on its own port and temporary store.
///
/// Start-up picks a free port, passes `--host 127.0.0.1 --port N --store DIR` (plus `--config`
/// when YAML is given), and waits until `GET /healthz` answers 200 and the process has logged
/// that it serves on that port. Stdout and stderr go to a log file (`log`). The process is
/// SIGKILLed in `deinit` if it is still running.
package final class PersistorProcess: @unchecked Sendable {
    package let port: Int
    /// The archive directory (`--store`).
    package let store: TemporaryDirectory
    /// Holds the log file and the config file.
    package let workDirectory: TemporaryDirectory
    package let logPath: String
    package let binary: String
    private let process: Process
    private let ownsStore: Bool

    /// - Parameters:
    ///   - config: YAML written to a file and passed as `--config`.
    ///   - arguments: extra arguments after `serve` and the generated ones.
    ///   - environment: added to (and overriding) the inherited environment, from which `PORT` and
    ///     `PERSISTOR_*` are removed.
    ///   - store: an existing archive directory to serve (e.g. one a previous process wrote);
    ///     it is then left in place. By default a fresh one is created and removed with the process.
    ///   - storeURL: a store URL (`gs://…`, `az://…`, `s3://…`) passed as `--store` instead of the
    ///     directory; `store` then stays empty.
    ///   - port: listen on this port instead of a free one picked now, e.g. to restart a server
    ///     where a sender (a push subscription) expects it. A port still in use is tried again for a
    ///     few seconds.
    package init(
        config: String? = nil, arguments: [String] = [], environment: [String: String] = [:],
        store existingStore: TemporaryDirectory? = nil, storeURL: String? = nil, port fixedPort: Int? = nil,
        startupTimeout: Double = 20
    ) throws {
        _ = killLiveServersAtExit
        let binary = try Self.locateBinary()
        let workDirectory = try TemporaryDirectory("persistor-e2e-run")
        let store = try existingStore ?? TemporaryDirectory("persistor-e2e-store")
        ownsStore = existingStore == nil
        let logPath = workDirectory.path + "/persistor.log"
        var configArguments: [String] = []
        if let config {
            let path = workDirectory.path + "/persistor.yaml"
            try Data(config.utf8).write(to: URL(fileURLWithPath: path))
            configArguments = ["--config", path]
        }
        var childEnvironment = ProcessInfo.processInfo.environment.filter { name, _ in
            name != "PORT" && !name.hasPrefix("PERSISTOR_")
        }
        for (name, value) in environment { childEnvironment[name] = value }

        var attempt = 0
        while true {
            attempt += 1
            let port = try fixedPort ?? Self.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments =
                ["serve", "--host", "127.0.0.1", "--port", String(port), "--store", storeURL ?? store.path]
                + configArguments + arguments
            process.environment = childEnvironment
            guard FileManager.default.createFile(atPath: logPath, contents: nil),
                let logHandle = FileHandle(forWritingAtPath: logPath)
            else { throw TestFailure("cannot create \(logPath)") }
            process.standardOutput = logHandle
            process.standardError = logHandle
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? logHandle.close()
            let pid = process.processIdentifier
            livePersistorPIDs.update { _ = $0.insert(pid) }

            let ready = Self.waitUntilServing(process: process, port: port, logPath: logPath, timeout: startupTimeout)
            if ready {
                self.binary = binary
                self.workDirectory = workDirectory
                self.store = store
                self.logPath = logPath
                self.port = port
                self.process = process
                return
            }
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if process.isRunning {
                _ = Glibc.kill(pid, SIGKILL)
                process.waitUntilExit()
                livePersistorPIDs.update { _ = $0.remove(pid) }
                workDirectory.remove()
                if existingStore == nil { store.remove() }
                throw TestFailure(
                    "persistor did not answer 200 on GET /healthz at 127.0.0.1:\(port) (and log that it serves there) within \(startupTimeout) s; its log:\n\(log)"
                )
            }
            livePersistorPIDs.update { _ = $0.remove(pid) }
            // Another process may have taken the port between our probe and the server's bind (or,
            // for a fixed port, may not have let go of it yet).
            if attempt < (fixedPort == nil ? 5 : 20) && (log.contains("in use") || log.contains("EADDRINUSE")) {
                if fixedPort != nil { usleep(250_000) }
                continue
            }
            workDirectory.remove()
            if existingStore == nil { store.remove() }
            throw TestFailure("persistor exited during start-up with status \(process.terminationStatus); its log:\n\(log)")
        }
    }

    deinit {
        if process.isRunning {
            _ = Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let pid = process.processIdentifier
        livePersistorPIDs.update { _ = $0.remove(pid) }
        if ProcessInfo.processInfo.environment["PERSISTOR_E2E_KEEP"] == nil {
            workDirectory.remove()
            if ownsStore { store.remove() }
        }
    }

    package var pid: Int32 { process.processIdentifier }
    package var isRunning: Bool { process.isRunning }

    /// Everything the process wrote to stdout and stderr so far.
    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends SIGTERM (graceful shutdown).
    package func terminate() {
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGTERM) }
    }

    /// Sends SIGKILL.
    package func kill() {
        if process.isRunning { _ = Glibc.kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits for the process to exit and returns its exit status (128 + the signal number if a
    /// signal ended it). Throws (after SIGKILLing it) if it is still running after `timeout` seconds.
    @discardableResult
    package func waitForExit(timeout: Double) throws -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() >= deadline {
                kill()
                process.waitUntilExit()
                throw TestFailure("persistor did not exit within \(timeout) s (killed it); its log:\n\(log)")
            }
            usleep(10_000)
        }
        process.waitUntilExit()
        let pid = process.processIdentifier
        livePersistorPIDs.update { _ = $0.remove(pid) }
        if process.terminationReason == .uncaughtSignal { return 128 + process.terminationStatus }
        return process.terminationStatus
    }

    /// A new keep-alive client connected to this server.
    package func connect(timeout: Double = 10) throws -> RawHTTPClient {
        try RawHTTPClient(port: port, timeout: timeout)
    }

    // MARK: Start-up helpers

    /// `PERSISTOR_BIN` if set, else the `persistor` executable next to the running test bundle.
    package static func locateBinary() throws -> String {
        let fileManager = FileManager.default
        func isExecutableFile(_ path: String) -> Bool {
            var isDirectory: ObjCBool = false
            return fileManager.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
                && fileManager.isExecutableFile(atPath: path)
        }
        if let path = ProcessInfo.processInfo.environment["PERSISTOR_BIN"], !path.isEmpty {
            guard isExecutableFile(path) else { throw TestFailure("PERSISTOR_BIN=\(path) is not an executable file") }
            return path
        }
        var starts: [URL] = [URL(fileURLWithPath: CommandLine.arguments[0])]
        if let executable = Bundle.main.executableURL { starts.append(executable) }
        starts.append(Bundle.main.bundleURL)
        if let me = try? fileManager.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: me))
        }
        var looked: [String] = []
        for start in starts {
            // The test runner sits in .build/<config>/ (Linux) or in a bundle below it (macOS).
            var directory = start.resolvingSymlinksInPath().deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = directory.appendingPathComponent("persistor").path
                if isExecutableFile(candidate) { return candidate }
                if !looked.contains(directory.path) { looked.append(directory.path) }
                directory = directory.deletingLastPathComponent()
            }
        }
        throw TestFailure(
            "the persistor executable was not found next to the test bundle (looked in \(looked.joined(separator: ", "))); build it with `swift build` (the same --scratch-path as `swift test`), or set PERSISTOR_BIN to its path"
        )
    }

    /// A port that was free a moment ago (bind 127.0.0.1:0, read the port, close).
    package static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw SocketError("bind 127.0.0.1:0") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw SocketError("getsockname") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Polls `GET /healthz` until it answers 200 and the log says the server listens on `port`
    /// (so a stranger that took the port cannot pass for our server). False if the process exits
    /// or the time runs out.
    private static func waitUntilServing(process: Process, port: Int, logPath: String, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else { return false }
            if let client = try? RawHTTPClient(port: port, timeout: 2),
                let response = try? client.perform("GET", "/healthz", headers: [("Connection", "close")]),
                response.status == 200
            {
                _ = client.waitForClose(seconds: 2)
                let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                if logSaysServing(log, port: port) && process.isRunning { return true }
            }
            usleep(50_000)
        }
        return false
    }

    /// True when a `persistor serving` log line (text or JSON format) names 127.0.0.1:`port`.
    static func logSaysServing(_ log: String, port: Int) -> Bool {
        let address = "127.0.0.1:\(port)"
        for line in log.split(separator: "\n") where line.contains("persistor serving") {
            var rest = line[...]
            while let range = rest.range(of: address) {
                let after = rest[range.upperBound...]
                if after.first.map({ !$0.isNumber }) ?? true { return true }
                rest = after
            }
        }
        return false
    }
}

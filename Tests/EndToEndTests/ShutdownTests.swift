import Foundation
import PersistorTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Durability across SIGTERM (graceful) and SIGKILL (crash): nothing that was answered 204 may be
/// missing from the archive (docs/design.md#durability-rules).
@Suite("Shutdown and durability end to end", .serialized)
struct ShutdownTests {
    /// What a fleet of clients saw.
    final class Tally: @unchecked Sendable {
        let acked = LockedBox([String]())
        let otherStatuses = LockedBox([Int: Int]())
        let errors = LockedBox(0)
        let attempted = LockedBox(0)
    }

    /// `connections` threads, each posting `posts` messages on a keep-alive connection (reconnecting
    /// when the server closes it), starting together.
    static func startFleet(
        port: Int, prefix: String, connections: Int, posts: Int, payloadBytes: Int,
        tally: Tally
    ) -> ThreadGroup {
        let start = LockedBox(false)
        let group = ThreadGroup(connections) { connection in
            while !start.get() { usleep(500) }
            var client: RawHTTPClient?
            for post in 0..<posts {
                let id = "\(prefix)-\(connection)-\(post)"
                tally.attempted.update { $0 += 1 }
                do {
                    if client == nil { client = try RawHTTPClient(port: port, timeout: 15) }
                    let payload = Array(String(repeating: "p", count: payloadBytes).utf8)
                    let response = try client!.perform(
                        "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                        body: wrappedEnvelope(id: id, data: payload))
                    if response.status == 204 {
                        tally.acked.update { $0.append(id) }
                    } else {
                        tally.otherStatuses.update { $0[response.status, default: 0] += 1 }
                    }
                    if response.closesConnection { client = nil }
                } catch {
                    tally.errors.update { $0 += 1 }
                    client = nil
                    // Connecting again fails once the listener is closed; stop this client then.
                    if (error as? SocketError)?.isRefused == true { return }
                }
            }
        }
        start.set(true)
        return group
    }

    @Test("SIGTERM during 200 concurrent deliveries: exit 0 within the grace period, every 204 archived")
    func sigtermKeepsEveryAck() throws {
        let server = try PersistorProcess(config: "server:\n  shutdownGrace: 10s\n")
        let tally = Tally()
        let fleet = Self.startFleet(port: server.port, prefix: "term", connections: 50, posts: 4, payloadBytes: 4000, tally: tally)

        // Let some deliveries complete, then pull the plug while the rest are in flight.
        let waitStart = Date()
        while tally.acked.get().count < 30 && secondsSince(waitStart) < 20 { usleep(1000) }
        let ackedBeforeSignal = tally.acked.get().count
        let signalled = Date()
        server.terminate()
        try fleet.join(timeout: 40)
        let status = try server.waitForExit(timeout: 15)
        let shutdownSeconds = secondsSince(signalled)

        let acked = tally.acked.get()
        let counts = try archivedIDCounts(server.store)
        let missing = acked.filter { counts[$0] == nil }
        print(
            "SIGTERM durability: \(tally.attempted.get()) attempted, \(ackedBeforeSignal) acked before SIGTERM, \(acked.count) acked in all, \(counts.values.reduce(0, +)) archived, other statuses \(tally.otherStatuses.get()), \(tally.errors.get()) refused/closed, exit \(status) after \(String(format: "%.2f", shutdownSeconds)) s"
        )

        #expect(ackedBeforeSignal >= 30, "the fleet never got going: \(ackedBeforeSignal) acks")
        #expect(status == 0, "exit status after SIGTERM; log:\n\(server.log)")
        #expect(shutdownSeconds <= 11, "shutdown took \(shutdownSeconds) s, shutdownGrace is 10 s")
        #expect(missing.isEmpty, "\(missing.count) acked messages are not in the archive: \(missing.prefix(20))")
        #expect(counts.values.allSatisfy { $0 == 1 }, "no message may be archived twice")
        #expect(Set(counts.keys).isSubset(of: Set((0..<50).flatMap { c in (0..<4).map { "term-\(c)-\($0)" } })))
        let strays = server.store.files().filter { !$0.hasSuffix(".ndjson.gz") }
        #expect(strays.isEmpty, "temporary files left after a clean shutdown: \(strays)")
        #expect(tally.otherStatuses.get().keys.allSatisfy { $0 == 503 }, "only 204 or 503 are acceptable answers: \(tally.otherStatuses.get())")
    }

    @Test("SIGTERM with drainDelay: readyz 503 at once, still serving during the delay, in-flight body finished, exit 0")
    func drainDelay() throws {
        let server = try PersistorProcess(config: "server:\n  drainDelay: 3s\n  shutdownGrace: 5s\n")
        let post: (RawHTTPClient, String) throws -> RawHTTPResponse = { client, id in
            try client.perform(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: id, data: Array("drain \(id)".utf8)))
        }
        let idle = try server.connect()
        #expect(try idle.perform("GET", "/healthz").status == 200)
        let busy = try server.connect()
        #expect(try post(busy, "drain-before").status == 204)
        // A request whose body is half sent when the signal comes.
        let partial = try server.connect()
        let partialBody = wrappedEnvelope(id: "drain-partial", data: Array("finished during the drain".utf8))
        try partial.send(
            RawHTTPClient.request("POST", "/pubsub", headers: [("Content-Type", "application/json")], body: partialBody)
                .dropLast(partialBody.count / 2).map { $0 })

        let signalled = Date()
        server.terminate()

        var readyStatus = 0
        while secondsSince(signalled) < 1.5 {
            readyStatus = (try? server.connect(timeout: 2).perform("GET", "/readyz"))?.status ?? 0
            if readyStatus == 503 { break }
            usleep(20_000)
        }
        #expect(readyStatus == 503, "GET /readyz must answer 503 right after SIGTERM")
        #expect(secondsSince(signalled) < 1.5, "readyz turned 503 only after \(secondsSince(signalled)) s")

        // Still serving during drainDelay: new connections and existing ones.
        #expect(try server.connect().perform("GET", "/healthz").status == 200, "healthz stays 200 while draining")
        let fresh = try server.connect()
        #expect(try post(fresh, "drain-during-new").status == 204, "a new connection is served during drainDelay")
        #expect(try post(busy, "drain-during-busy").status == 204, "an open connection is served during drainDelay")
        #expect(secondsSince(signalled) < 2.7, "the checks during drainDelay ran too late to mean anything")

        // After drainDelay: idle connections are closed, the half-sent request is still answered.
        #expect(idle.waitForClose(seconds: 6), "an idle keep-alive connection must be closed after drainDelay")
        let idleClosedAfter = secondsSince(signalled)
        #expect(idleClosedAfter >= 2.7, "connections must be kept for drainDelay (3s); idle one closed after \(idleClosedAfter) s")
        try partial.send(Array(partialBody.suffix(partialBody.count / 2)))
        let finished = try partial.readResponse()
        #expect(finished.status == 204, "the in-flight request is answered: \(finished.status)")
        #expect(finished.closesConnection, "answered with Connection: close while draining")

        var refused = false
        while !refused && secondsSince(signalled) < 9 {
            do {
                _ = try RawHTTPClient(port: server.port, timeout: 1)
                usleep(50_000)
            } catch {
                refused = true
            }
        }
        #expect(refused, "new connections must be refused after drainDelay")

        let status = try server.waitForExit(timeout: 10)
        #expect(status == 0, "exit status; log:\n\(server.log)")
        #expect(secondsSince(signalled) <= 8.5, "exit must come within drainDelay + shutdownGrace")
        let counts = try archivedIDCounts(server.store)
        for id in ["drain-before", "drain-partial", "drain-during-new", "drain-during-busy"] {
            #expect(counts[id] == 1, "\(id) archived \(counts[id] ?? 0) times")
        }
    }

    @Test("crash safety: 20 SIGKILLs at random moments under load on one store; every 204 is archived, no object is torn, leftovers are cleaned")
    func sigkillCycles() throws {
        let store = try TemporaryDirectory("persistor-e2e-crash")
        defer { store.remove() }
        let tally = Tally()
        var generator = SystemRandomNumberGenerator()
        var leftoversSeen = 0
        let cycles = 20
        for cycle in 0..<cycles {
            // Leftovers of the previous crash are removed at start-up, before serving.
            let server = try PersistorProcess(store: store)
            let strays = store.files().filter { !$0.hasSuffix(".ndjson.gz") }
            #expect(strays.isEmpty, "cycle \(cycle): temporary files survived a restart: \(strays)")
            let fleet = Self.startFleet(
                port: server.port, prefix: "crash\(cycle)", connections: 16, posts: 10_000,
                payloadBytes: Int.random(in: 10...4000, using: &generator), tally: tally)
            let acksBefore = tally.acked.get().count
            let waitStart = Date()
            while tally.acked.get().count < acksBefore + 5 && secondsSince(waitStart) < 20 { usleep(1000) }
            usleep(UInt32.random(in: 0...400_000, using: &generator))
            server.kill()
            try fleet.join(timeout: 40)
            #expect(try server.waitForExit(timeout: 5) == 128 + SIGKILL)
            leftoversSeen += store.files().filter { $0.contains(".tmp-") }.count
        }
        let acked = tally.acked.get()
        // Every object decompresses completely (a torn object would fail here) and holds the acks.
        let counts = try archivedIDCounts(store)
        let missing = acked.filter { counts[$0] == nil }
        print(
            "crash safety: \(cycles) SIGKILL cycles, \(acked.count) acked, \(counts.count) archived, \(missing.count) lost, \(leftoversSeen) temp files left by crashes (all removed at restart)"
        )
        #expect(acked.count >= cycles * 5)
        #expect(missing.isEmpty, "\(missing.count) acked messages are not in the archive: \(missing.prefix(20))")

        let restarted = try PersistorProcess(store: store)
        let client = try restarted.connect()
        #expect(
            try client.perform(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: "after-restart", data: Array("again".utf8))
            ).status == 204)
        #expect(store.files().filter { !$0.hasSuffix(".ndjson.gz") }.isEmpty)
        #expect(try archivedIDCounts(store)["after-restart"] == 1)
    }

    /// The environment of a `gs://` store whose credentials come from a metadata server at `host`
    /// (no key file, no emulator).
    static func metadataServerEnvironment(_ host: String) -> [String: String] {
        ["GOOGLE_APPLICATION_CREDENTIALS": "", "STORAGE_EMULATOR_HOST": "", "GCE_METADATA_HOST": host]
    }

    /// Threads of `pid` that could take SIGTERM or SIGINT other than by sigwait: not blocking them
    /// (`SigBlk` in /proc/PID/task/TID/status, bit N-1 for signal N) and not waiting in sigwait
    /// (which unblocks what it waits for; `wchan` do_sigtimedwait), or ignoring them (`SigIgn`).
    /// A Dispatch signal source leaves the main thread in `sigsuspend` with nothing blocked.
    static func threadsTakingTerminationSignals(_ pid: Int32) -> [String] {
        let mask = UInt64(1) << (SIGTERM - 1) | UInt64(1) << (SIGINT - 1)
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { tid -> String? in
            let directory = "/proc/\(pid)/task/\(tid)"
            guard let status = try? String(contentsOfFile: directory + "/status", encoding: .utf8) else { return nil }
            func field(_ name: String) -> UInt64 {
                let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                return line.flatMap { UInt64($0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces), radix: 16) } ?? 0
            }
            let waitingIn = (try? String(contentsOfFile: directory + "/wchan", encoding: .utf8)) ?? "?"
            let takes = field("SigBlk") & mask != mask && !waitingIn.contains("sigtimedwait")
            return takes || field("SigIgn") & mask != 0 ? "thread \(tid) (SigBlk \(String(field("SigBlk"), radix: 16)), in \(waitingIn))" : nil
        }
    }

    /// `GET /readyz`'s status and body now, on a new connection.
    static func readiness(_ port: Int) -> (status: Int, body: String)? {
        guard let response = try? RawHTTPClient(port: port, timeout: 2).perform("GET", "/readyz", headers: [("Connection", "close")]) else {
            return nil
        }
        return (response.status, response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("SIGTERM is taken every time while a gs:// store's metadata host does not resolve (10 runs)")
    func sigtermWithAnUnresolvableCredentialHost() throws {
        var generator = SystemRandomNumberGenerator()
        for run in 0..<10 {
            let server = try PersistorProcess(
                config: "server:\n  drainDelay: 300ms\n  shutdownGrace: 2s\n",
                environment: Self.metadataServerEnvironment("nonexistent.invalid"), storeURL: "gs://bkt/x")
            // Every thread inherited the blocked signals; only the main thread takes them, in sigwait.
            let exposed = Self.threadsTakingTerminationSignals(server.pid)
            #expect(exposed.isEmpty, "run \(run): threads that take or ignore SIGTERM/SIGINT themselves: \(exposed)")
            // Anywhere in the store's probe cycle (a failed probe, then one every 2 s).
            usleep(UInt32.random(in: 200_000...1_500_000, using: &generator))
            let signalled = Date()
            server.terminate()
            var draining = false
            while !draining && secondsSince(signalled) < 0.3 {
                if let answer = Self.readiness(server.port) { draining = answer.status == 503 && answer.body == "shutting down" }
                if !draining { usleep(20_000) }
            }
            #expect(draining, "run \(run): /readyz must answer 503 shutting down during drainDelay")
            let status = try server.waitForExit(timeout: 5)
            #expect(status == 0, "run \(run): exit status after SIGTERM; log:\n\(server.log)")
            #expect(server.log.contains("shutdown complete"), "run \(run)")
        }
    }

    @Test("SIGTERM while the start-up probe still waits for the store: readyz 503 at once, exit 0 without waiting for the probe")
    func sigtermDuringStartUp() throws {
        // A metadata server that accepts connections and never answers: the start-up probe waits
        // for its 5 s attempt timeout.
        let silent = try SilentListener()
        let binary = try PersistorProcess.locateBinary()
        let work = try TemporaryDirectory("persistor-e2e-startup")
        defer { work.remove() }
        try Data("server:\n  drainDelay: 500ms\n  shutdownGrace: 2s\n".utf8).write(to: URL(fileURLWithPath: work.path + "/persistor.yaml"))
        let port = try PersistorProcess.freePort()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = [
            "serve", "--host", "127.0.0.1", "--port", String(port), "--store", "gs://bkt/x",
            "--config", work.path + "/persistor.yaml",
        ]
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PERSISTOR_") && $0.key != "PORT" }
            .merging(Self.metadataServerEnvironment("127.0.0.1:\(silent.port)")) { $1 }
        let logPath = work.path + "/log"
        try #require(FileManager.default.createFile(atPath: logPath, contents: nil))
        let log = try #require(FileHandle(forWritingAtPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        var listening = false
        let started = Date()
        while !listening && secondsSince(started) < 10 {
            listening = (try? RawHTTPClient(port: port, timeout: 1).perform("GET", "/healthz", headers: [("Connection", "close")]))?.status == 200
            if !listening { usleep(20_000) }
        }
        let logText = { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
        try #require(listening, "the server never listened; log:\n\(logText())")
        #expect(!logText().contains("persistor serving"), "the probe must still be waiting for the silent metadata server")

        let signalled = Date()
        kill(process.processIdentifier, SIGTERM)
        var readiness: (status: Int, body: String)?
        while secondsSince(signalled) < 0.5 {
            readiness = Self.readiness(port)
            if readiness?.body == "shutting down" { break }
            usleep(20_000)
        }
        #expect(readiness?.status == 503 && readiness?.body == "shutting down", "\(String(describing: readiness))")
        while process.isRunning && secondsSince(signalled) < 4 { usleep(10_000) }
        let exitedAfter = secondsSince(signalled)
        #expect(!process.isRunning, "still running \(exitedAfter) s after SIGTERM; log:\n\(logText())")
        process.waitUntilExit()
        #expect(
            process.terminationReason == .exit && process.terminationStatus == 0,
            "exit \(process.terminationReason == .exit ? "status" : "signal") \(process.terminationStatus); log:\n\(logText())")
        #expect(exitedAfter < 3, "the shutdown must not wait for the probe's 5 s attempt")
    }
}

/// A loopback listener that never accepts: connections complete in the kernel's backlog and
/// every request waits unanswered.
final class SilentListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw SocketError("bind/listen 127.0.0.1:0")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// The command line, run as the real binary.
@Suite("Command line") struct CommandLineTests {
    @Test("--port out of 0-65535 is refused with a usage error (exit 64), as PORT and server.port are", arguments: ["70000", "65536", "-1"])
    func outOfRangePortIsRefused(port: String) throws {
        let work = try TemporaryDirectory("persistor-e2e-cli")
        defer { work.remove() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try PersistorProcess.locateBinary())
        process.arguments = ["serve", "--host", "127.0.0.1", "--port=\(port)", "--store", work.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let started = Date()
        while process.isRunning && secondsSince(started) < 10 { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            Issue.record("--port=\(port) was accepted: the server ran")
            return
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 64, "\(message)")
        #expect(message.contains("--port must be a port number (0-65535), got \(port)"), "\(message)")
    }
}

import ArgumentParser
import Foundation
import Logging
import PersistorApp
import Synchronization

/// SIGTERM and SIGINT as the main thread takes them.
let terminationSignals = TerminationSignals()

@main
enum Main {
    /// Synchronous, so that the main thread never enters `dispatch_main()` (see `TerminationSignals`):
    /// it blocks the signals before any other thread exists, runs the command on the cooperative
    /// pool, and then only waits for signals. Nothing here uses the main queue or the main actor,
    /// which would then never run.
    static func main() {
        TerminationSignals.block()
        Task.detached {
            await PersistorCommand.main()
            exit(0)
        }
        terminationSignals.takeSignals()
    }
}

struct PersistorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persistor",
        abstract: "Archives Pub/Sub push and Event Grid deliveries, unaltered, to blob storage.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self)
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server.",
        discussion: """
        Precedence: flags, then environment (PORT, PERSISTOR_STORE, PERSISTOR_CONFIG), then the \
        config file, then defaults (0.0.0.0:8080, ./persistor-data).
        """)

    @Option(help: "YAML configuration file (env PERSISTOR_CONFIG).")
    var config: String?

    @Option(help: "Address to listen on (default 0.0.0.0).")
    var host: String?

    @Option(help: "Port to listen on, 0-65535 (env PORT; default 8080).")
    var port: Int?

    @Option(help: "Store URL: a directory, file:///abs/dir (env PERSISTOR_STORE; default ./persistor-data).")
    var store: String?

    @Option(help: "Log format: text or json (default from config, else text).")
    var logFormat: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?

    func validate() throws {
        // Like PORT and server.port: a larger value would be truncated to 16 bits by the socket.
        if let port, !(0...65535).contains(port) { throw ValidationError("--port must be a port number (0-65535), got \(port)") }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var config = PersistorConfig()
        if let path = configPath(environment) {
            do {
                config = try ConfigLoader.load(file: path, environment: environment)
            } catch {
                throw ValidationError("\(error)")
            }
        }
        let format = logFormat ?? config.log.format.rawValue
        let levelName = logLevel ?? config.log.level
        guard let level = Logger.Level(rawValue: levelName) else { throw ValidationError("unknown log level '\(levelName)'") }
        guard format == "text" || format == "json" else { throw ValidationError("unknown log format '\(format)' (text or json)") }
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "persistor")

        var resolvedPort = config.server.port ?? 8080
        if let text = environment["PORT"], !text.isEmpty {
            guard let value = Int(text), (0...65535).contains(value) else { throw ValidationError("PORT must be a port number, got '\(text)'") }
            resolvedPort = value
        }
        if let port { resolvedPort = port }
        let settings = Persistor.Settings(
            host: host ?? config.server.host ?? "0.0.0.0",
            port: resolvedPort,
            store: store ?? environment["PERSISTOR_STORE"].flatMap { $0.isEmpty ? nil : $0 } ?? config.store ?? "./persistor-data",
            config: config)

        let persistor: Persistor
        do {
            persistor = try Persistor(settings: settings, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["cause": "\(error)"])
            throw ExitCode(2)
        }
        // Start-up and the signals race: a signal while the start-up probe still waits for a slow
        // store begins the shutdown at once instead of after the probe.
        enum Event: Sendable { case started, startFailed(String), signalled }
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let startupEnded = Atomic<Bool>(false)
        Task {
            do {
                _ = try await persistor.start()
                sink.yield(.started)
            } catch {
                sink.yield(.startFailed("\(error)"))
            }
            startupEnded.store(true, ordering: .releasing)
        }
        Task {
            for await _ in terminationSignals.received {
                sink.yield(.signalled)
                break
            }
        }
        eventLoop: for await event in events {
            switch event {
            case .started: continue
            case .startFailed(let cause):
                logger.critical("cannot start", metadata: ["cause": "\(cause)"])
                throw ExitCode(2)
            case .signalled:
                // Readiness leaves `starting` once the listener is bound (milliseconds); wait for that,
                // so the shutdown's `draining` is not overwritten. Still `starting` then: start-up
                // failed, and its event comes next.
                while persistor.readiness.state == .starting && !startupEnded.load(ordering: .acquiring) {
                    try? await Task.sleep(for: .milliseconds(5))
                }
                if persistor.readiness.state == .starting { continue }
                break eventLoop
            }
        }
        let clean = await persistor.shutdown()
        if !clean { throw ExitCode(1) }
    }

    private func configPath(_ environment: [String: String]) -> String? {
        config ?? environment["PERSISTOR_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

import ArgumentParser
import Foundation
import Logging
import PersistorApp

/// `persistor serve`: the server, configured from flags, environment and file (docs/configuration.md).
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

    @Option(
        help:
            "Store URL: a directory, file:///abs/dir, gs://bucket/prefix, az://account/container/prefix or s3://bucket/prefix (env PERSISTOR_STORE; default ./persistor-data)."
    )
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
        if let logFormat {
            guard let format = LogSettings.Format(rawValue: logFormat) else {
                throw ValidationError("unknown log format '\(logFormat)' (text or json)")
            }
            config.log.format = format
        }
        if let logLevel {
            guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
            config.log.level = level
        }
        let log = config.log
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = log.format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = log.level
            return handler
        }
        let logger = Logger(label: "persistor")

        // Flags, then environment, then the file (already in `config`, else the defaults).
        if let text = environment["PORT"], !text.isEmpty {
            guard let value = Int(text), (0...65535).contains(value) else { throw ValidationError("PORT must be a port number, got '\(text)'") }
            config.server.port = value
        }
        if let port { config.server.port = port }
        if let host { config.server.host = host }
        if let value = environment["PERSISTOR_STORE"], !value.isEmpty { config.store = value }
        if let store { config.store = store }

        let persistor: Persistor
        do {
            persistor = try Persistor(config: config, logger: logger)
        } catch {
            logger.critical("cannot start", metadata: ["cause": "\(error)"])
            throw ExitCode(2)
        }
        let services = persistor.serviceGroup()
        // The signals come from the main thread's sigwait (TerminationSignals), not from the
        // group's own signal handling; a request before the group runs is kept by the group.
        let shutdownTrigger = Task {
            for await _ in terminationSignals.received {
                await services.triggerGracefulShutdown()
                break
            }
        }
        defer { shutdownTrigger.cancel() }
        do {
            try await services.run()
        } catch let error as Persistor.StartupError {
            logger.critical("cannot start", metadata: ["cause": "\(error)"])
            throw ExitCode(2)
        } catch is Persistor.ShutdownFailure {
            throw ExitCode(1)  // logged by the shutdown itself, with the connections still open
        } catch {
            logger.critical("stopped", metadata: ["cause": "\(error)"])
            throw ExitCode(1)
        }
    }

    private func configPath(_ environment: [String: String]) -> String? {
        config ?? environment["PERSISTOR_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
    }
}

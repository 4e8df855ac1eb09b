import Foundation
import Logging
import PersistorApp
import PersistorCore
import PersistorTestSupport

/// How `withPersistor` runs the server.
package enum PersistorTestMode: Sendable, CustomStringConvertible {
    /// `Persistor` in this test process, under the same service group the CLI runs (start-up
    /// probe, store health, graceful shutdown), on a free loopback port. Fast, and it can take
    /// fakes: an `InMemoryBlobWriter` as its store, a `StaticJWKSFetcher` for its token routes.
    case inProcess
    /// The built `persistor` executable as a child process (`PersistorProcess`), configured with
    /// the same YAML through `--config`, stopped with SIGTERM.
    case binary

    package var description: String { self == .inProcess ? "in process" : "binary" }
}

/// The store `withPersistor` gives the server.
package enum PersistorTestStore: Sendable {
    /// A fresh temporary directory (a local store), removed afterwards; the client names it.
    case temporaryDirectory
    /// This writer instead of the store the configuration names (in process only: the binary
    /// opens its own).
    case writer(any BlobWriter)
    /// A store URL (`gs://…`, `az://…`, `s3://…`, a directory), opened as the binary opens `--store`.
    case url(String)
}

/// Runs a Persistor configured by `config`, hands `body` a client for it, then shuts it down
/// gracefully, as SIGTERM would (docs/operations.md), and fails if that shutdown fails.
///
/// Both modes take the same configuration and give the same client, so a test can run either way:
///
/// ```swift
/// try await withPersistor(.inProcess, config: "routes: [{name: orders, path: /orders, kind: pubsub}]") { client in
///     #expect(try await client.execute("GET", "/healthz").status == 200)
/// }
/// ```
///
/// - Parameters:
///   - config: the YAML configuration file's text (docs/configuration.md); empty for the defaults.
///     As with the CLI's flags, the listen address is replaced by 127.0.0.1 on a free port and
///     the store by `store`.
///   - environment: expands `${VAR}` in `config`, on top of this process's environment without
///     `PORT` and `PERSISTOR_*`; the binary also runs with it.
///   - jwks: the fetcher of the token routes' signing keys (in process only; the binary fetches
///     from each route's `jwksURL`).
package func withPersistor<Value>(
    _ mode: PersistorTestMode,
    config: String = "",
    environment: [String: String] = [:],
    store: PersistorTestStore = .temporaryDirectory,
    jwks: StaticJWKSFetcher? = nil,
    isolation: isolated (any Actor)? = #isolation,
    _ body: (PersistorTestClient) async throws -> Value
) async throws -> Value {
    switch mode {
    case .inProcess:
        return try await InProcessPersistor.run(config: config, environment: environment, store: store, jwks: jwks, body)
    case .binary:
        return try await BinaryPersistor.run(config: config, environment: environment, store: store, jwks: jwks, body)
    }
}

/// The environment the server sees, as `PersistorProcess` gives it to the binary.
private func serverEnvironment(_ extra: [String: String]) -> [String: String] {
    ProcessInfo.processInfo.environment.filter { name, _ in name != "PORT" && !name.hasPrefix("PERSISTOR_") }
        .merging(extra) { $1 }
}

// MARK: In process

enum InProcessPersistor {
    static let startupTimeout: Duration = .seconds(20)

    private enum StartupEvent: Sendable {
        case serving(port: Int)
        case ended((any Error)?)
        case timedOut
    }

    static func run<Value>(
        config yaml: String, environment: [String: String], store: PersistorTestStore,
        jwks: StaticJWKSFetcher?, isolation: isolated (any Actor)? = #isolation,
        _ body: (PersistorTestClient) async throws -> Value
    ) async throws -> Value {
        var config = try ConfigLoader.parse(yaml: yaml, source: "withPersistor config", environment: serverEnvironment(environment))
        // What the binary gets from PersistorProcess's flags: --host 127.0.0.1 --port <free> --store.
        config.server.host = "127.0.0.1"
        config.server.port = 0
        var directory: TemporaryDirectory?
        var writer: (any BlobWriter)?
        switch store {
        case .temporaryDirectory:
            let created = try TemporaryDirectory("persistor-testing-store")
            directory = created
            config.store = created.path
        case .writer(let given):
            writer = given
            config.store = given.name  // what the log names as the store
        case .url(let url):
            config.store = url
        }
        defer { if ProcessInfo.processInfo.environment["PERSISTOR_E2E_KEEP"] == nil { directory?.remove() } }

        let (events, event) = AsyncStream.makeStream(of: StartupEvent.self)
        let recorder = LogRecorder(level: config.log.level) { event.yield(.serving(port: $0)) }
        let logger = Logger(label: "persistor") { _ in LogRecorder.Handler(recorder: recorder) }
        let persistor = try Persistor(config: config, logger: logger, store: writer, jwksFetcher: jwks)
        let services = persistor.serviceGroup()
        let running = Task { () -> (any Error)? in
            do {
                try await services.run()
                event.yield(.ended(nil))
                return nil
            } catch {
                event.yield(.ended(error))
                return error
            }
        }
        let timer = Task {
            guard (try? await Task.sleep(for: startupTimeout)) != nil else { return }
            event.yield(.timedOut)
        }
        var iterator = events.makeAsyncIterator()
        let first = await iterator.next()
        timer.cancel()

        guard case .serving(let port)? = first else {
            await services.triggerGracefulShutdown()
            _ = await running.value
            if case .ended(let error?)? = first { throw error }
            throw TestFailure("persistor did not log that it serves within \(startupTimeout); its log:\n\(recorder.text)")
        }
        let client = PersistorTestClient(mode: .inProcess, port: port, storeDirectory: directory) { recorder.text }
        let outcome: Result<Value, any Error>
        do {
            outcome = .success(try await body(client))
        } catch {
            outcome = .failure(error)
        }
        await services.triggerGracefulShutdown()
        let ended = await running.value
        let value = try outcome.get()
        if let ended { throw TestFailure("persistor's shutdown failed: \(ended); its log:\n\(recorder.text)") }
        return value
    }
}

/// Keeps what the in-process server logs, and tells who waits for it which port it serves on.
final class LogRecorder: Sendable {
    private let lines = LockedBox<[String]>([])
    private let level: Logger.Level
    private let onServing: @Sendable (Int) -> Void

    init(level: Logger.Level, onServing: @escaping @Sendable (Int) -> Void) {
        self.level = level
        self.onServing = onServing
    }

    var text: String { lines.get().joined(separator: "\n") }

    fileprivate func record(_ event: LogEvent, metadata: Logger.Metadata) {
        // The line the binary's harness waits for too (PersistorProcess): the start-up probe has
        // answered and the listener is bound. It is seen whatever the configured level.
        if event.message.description == "persistor serving", let address = metadata["address"]?.description,
            let port = address.split(separator: ":").last.flatMap({ Int($0) })
        {
            onServing(port)
        }
        guard event.level >= level else { return }
        let fields = metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }
        lines.update { $0.append(([event.level.rawValue, event.message.description] + fields).joined(separator: " ")) }
    }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.record(event, metadata: metadata.merging(event.metadata ?? [:]) { $1 })
        }
    }
}

// MARK: The binary

enum BinaryPersistor {
    /// Longer than the default `shutdownGrace` (10 s), so a slow drain is told apart from a hang.
    static let exitTimeout: Double = 30

    static func run<Value>(
        config yaml: String, environment: [String: String], store: PersistorTestStore,
        jwks: StaticJWKSFetcher?, isolation: isolated (any Actor)? = #isolation,
        _ body: (PersistorTestClient) async throws -> Value
    ) async throws -> Value {
        let storeURL: String?
        switch store {
        case .temporaryDirectory: storeURL = nil
        case .writer(let writer):
            throw TestFailure("the binary opens its own store: \(writer.name) can only be used in process")
        case .url(let url): storeURL = url
        }
        guard jwks == nil else {
            throw TestFailure("the binary fetches signing keys itself: give its token routes a loopback jwksURL instead")
        }
        let config = yaml.isEmpty ? nil : yaml
        let process = try await offThePool {
            try PersistorProcess(config: config, environment: environment, storeURL: storeURL)
        }
        let client = PersistorTestClient(
            mode: .binary, port: process.port,
            storeDirectory: storeURL == nil ? process.store : nil
        ) { process.log }
        let outcome: Result<Value, any Error>
        do {
            outcome = .success(try await body(client))
        } catch {
            outcome = .failure(error)
        }
        process.terminate()
        let exit: Result<Int32, any Error>
        do {
            exit = .success(try await offThePool { try process.waitForExit(timeout: exitTimeout) })
        } catch {
            exit = .failure(error)
        }
        let value = try outcome.get()
        let status = try exit.get()
        guard status == 0 else { throw TestFailure("persistor exited with status \(status) after SIGTERM; its log:\n\(process.log)") }
        return value
    }
}

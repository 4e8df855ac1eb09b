import Foundation
import Logging
import PersistorArchive
import PersistorAuth
import PersistorCore
import PersistorHTTP
import PersistorProtocols
import PersistorStores
import ServiceLifecycle

/// The server as configured: routes, archivers and the store, plus start-up and graceful shutdown.
package final class Persistor: Service {
    /// The `/healthz` answer (the same every time).
    private static let healthy = HTTPResponse.text(200, "ok")
    package struct StartupError: Error, CustomStringConvertible {
        package var description: String
    }

    /// The configuration after the CLI applied flags and environment (flag > environment > file).
    package let config: PersistorConfig
    package let readiness = Readiness()
    private let server: HTTPServer
    private let archivers: [RouteArchiver]
    private let storeHealth: StoreHealth
    private let logger: Logger

    /// `store` replaces the store `config.store` names, `jwksFetcher` the HTTPS fetcher of the token
    /// routes' keys: so tests can run the whole server in process on fakes (docs/development.md#the-testing-kit).
    package init(
        config: PersistorConfig, logger: Logger, store injectedStore: (any BlobWriter)? = nil,
        jwksFetcher: (any JWKSFetcher)? = nil
    ) throws(StartupError) {
        self.config = config
        self.logger = logger

        let store: any BlobWriter
        do {
            store = try injectedStore ?? StoreFactory.open(config.store, policy: config.storeRetry)
        } catch {
            throw StartupError(description: "cannot open store \(config.store): \(error)")
        }
        // Readiness wants room for the largest batches written at once (docs/stores.md#local-filesystem).
        let batches = config.archive.batch.maxBytes.multipliedReportingOverflow(by: config.archive.batch.concurrentWrites)
        (store as? LocalFileStore)?.minimumFreeBytes = batches.overflow ? .max : batches.partialValue

        let readiness = self.readiness
        let storeHealth = StoreHealth(store: store, readiness: readiness, logger: logger)
        self.storeHealth = storeHealth
        let namer = ObjectNamer()
        var router = Router()
        var archivers: [RouteArchiver] = []
        let keys = jwksFetcher.map { JWKSRegistry(fetcher: $0, logger: logger) } ?? JWKSRegistry(logger: logger)
        for route in config.routes {
            let authenticator = route.auth.map {
                RouteAuthenticator(route: route.name, settings: $0, keys: keys, logger: logger)
            }
            if let authenticator {
                authenticator.prefetchKeys()
            } else {
                logger.warning("route accepts unauthenticated deliveries", metadata: ["route": "\(route.name)", "path": "\(route.path)"])
            }
            // The parser admits the largest route limit; each route enforces its own.
            let limit = route.maxBodyBytes ?? config.server.limits.maxBodyBytes
            let archiver = RouteArchiver(route: route.name, settings: config.archive, store: store, namer: namer)
            archivers.append(archiver)
            let responder = ArchiveResponder(route: route.name, archiver: archiver, health: storeHealth, logger: logger)
            switch route.kind {
            case .pubsub:
                let handler = PubSubRoute(
                    decoder: PubSubDecoder(route: route.name, delivery: route.delivery),
                    responder: responder, logger: logger)
                router.add(
                    route.path,
                    Router.Route(
                        methods: ["POST"], maxBodyBytes: limit,
                        admission: admission(by: authenticator), handler: handler.handle))
            case .eventgrid:
                let handler = EventGridRoute(
                    decoder: EventGridDecoder(route: route.name, allowedOrigins: route.allowedOrigins),
                    route: route.name, responder: responder, logger: logger)
                router.add(
                    route.path,
                    Router.Route(
                        methods: ["POST", "OPTIONS"], maxBodyBytes: limit,
                        admission: admission(by: authenticator), handler: handler.handle))
            }
        }
        router.add("/healthz", Router.Route(methods: ["GET"]) { _, respond in respond(Self.healthy) })
        router.add(
            "/readyz",
            Router.Route(methods: ["GET"]) { _, respond in
                switch readiness.state {
                case .ready: respond(.text(200, "ready"))
                case .starting: respond(.text(503, "starting", headers: HTTPHeaders([("Retry-After", "1")])))
                case .storeFailing:
                    respond(.text(503, "store failing: \(readiness.storeFailure ?? "unknown")", headers: HTTPHeaders([("Retry-After", "5")])))
                case .draining: respond(.text(503, "shutting down"))
                }
            })
        self.archivers = archivers

        var httpSettings = config.server
        httpSettings.limits.maxBodyBytes = max(httpSettings.limits.maxBodyBytes, config.routes.compactMap(\.maxBodyBytes).max() ?? 0)
        httpSettings.probePaths = ["/healthz", "/readyz"]
        let protocolLogger = logger
        self.server = HTTPServer(settings: httpSettings, service: router) { status, reason in
            protocolLogger.info("request rejected", metadata: ["status": "\(status)", "cause": "\(reason)"])
        }
    }

    /// Why the process ends with a failure after it was started.
    package enum ShutdownFailure: Error, CustomStringConvertible {
        /// `shutdownGrace` ran out before every connection was answered and every batch flushed.
        case graceExpired

        package var description: String { "the shutdown grace period ran out" }
    }

    /// The services the process runs, in start order: the store's health probe, then this (the
    /// listener and the archive). On SIGTERM the group shuts them down in reverse order, so the
    /// probe keeps `/readyz` truthful until the archive is flushed; when this service ends,
    /// the whole group ends.
    package func serviceGroup() -> ServiceGroup {
        ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: storeHealth),
                    .init(
                        service: self, successTerminationBehavior: .gracefullyShutdownGroup,
                        failureTerminationBehavior: .gracefullyShutdownGroup),
                ],
                logger: logger))
    }

    /// Serves until graceful shutdown, then drains (`shutdown()`). Throws `StartupError` when the
    /// listener cannot bind, `ShutdownFailure.graceExpired` when the drain did not finish in time.
    package func run() async throws {
        let port = try start()
        // The start-up probe runs beside the wait: a SIGTERM while a slow store still answers it
        // begins the shutdown at once.
        let startupProbe = Task { [storeHealth, logger, config] in
            await storeHealth.check()
            logger.info(
                "persistor serving",
                metadata: [
                    "address": "\(config.server.host):\(port)", "store": "\(config.store)",
                    "routes": "\(config.routes.map { "\($0.path) (\($0.kind.rawValue))" }.joined(separator: ", "))",
                ])
        }
        try? await gracefulShutdown()
        startupProbe.cancel()
        guard await shutdown() else { throw ShutdownFailure.graceExpired }
    }

    /// Starts listening; returns the bound port. Readiness is ready from here on unless the
    /// start-up probe or a write finds the store failing.
    package func start() throws(StartupError) -> Int {
        let port: Int
        do {
            port = try server.start()
        } catch {
            throw StartupError(description: "\(error)")
        }
        readiness.set(.ready)
        return port
    }

    /// SIGTERM: readiness 503 at once, keep serving for `drainDelay` (every answer now with
    /// `Connection: close`, HTTP/2 told by GOAWAY, so senders reconnect to another instance), stop
    /// accepting, answer what is in flight, flush every batch. Returns false if `shutdownGrace`
    /// ran out first.
    package func shutdown() async -> Bool {
        let config = self.config.shutdown
        let deadline = ContinuousClock.now + config.drainDelay + config.shutdownGrace
        readiness.set(.draining)
        logger.info("shutting down", metadata: ["drainDelay": "\(config.drainDelay)", "grace": "\(config.shutdownGrace)"])
        server.announceShutdown()
        if config.drainDelay > .zero { try? await Task.sleep(for: config.drainDelay) }
        server.stopAccepting()
        server.drainConnections()
        let closed = await server.waitForConnections(until: deadline)
        // Every answered request's batch is already durable; this waits for batches whose
        // senders went away before their answer. A store that hangs must not hold the process
        // past its grace, so the flush races the deadline instead of being awaited.
        let archivers = self.archivers
        let flushed = await Self.finishes(by: deadline) {
            for archiver in archivers { await archiver.drain() }
        }
        if !closed || !flushed {
            logger.error("shutdown grace period ran out", metadata: ["openConnections": "\(server.connectionCount)"])
            return false
        }
        logger.info("shutdown complete")
        return true
    }

    /// Whether `work` finishes before `deadline`; when it does not, it is left running.
    private static func finishes(by deadline: ContinuousClock.Instant, _ work: @escaping @Sendable () async -> Void) async -> Bool {
        let (outcomes, outcome) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingOldest(1))
        Task {
            await work()
            outcome.yield(true)
        }
        let timer = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            outcome.yield(false)
        }
        defer { timer.cancel() }
        for await finished in outcomes { return finished }
        return false
    }
}

import Foundation
import Logging
import PersistorArchive
import PersistorAuth
import PersistorCore
import PersistorHTTP
import PersistorProtocols
import PersistorStores
import Synchronization

/// The server as configured: routes, archivers and the store, plus start-up and graceful shutdown.
public final class Persistor: Sendable {
    /// The `/healthz` answer (the same every time).
    private static let healthy = HTTPResponse.text(200, "ok")
    /// Settings after applying flags, environment and the config file (in that precedence).
    public struct Settings: Sendable {
        public var host: String
        public var port: Int
        public var store: String
        public var config: PersistorConfig

        public init(host: String, port: Int, store: String, config: PersistorConfig) {
            self.host = host
            self.port = port
            self.store = store
            self.config = config
        }
    }

    public struct StartupError: Error, CustomStringConvertible {
        public var description: String
    }

    public let settings: Settings
    public let readiness = Readiness()
    private let server: HTTPServer
    private let archivers: [RouteArchiver]
    private let storeHealth: StoreHealth
    private let logger: Logger

    public init(settings: Settings, logger: Logger) throws(StartupError) {
        self.settings = settings
        self.logger = logger
        let config = settings.config

        let store: any BlobWriter
        do {
            store = try StoreFactory.open(settings.store, policy: config.storeRetry)
        } catch {
            throw StartupError(description: "cannot open store \(settings.store): \(error)")
        }
        // Readiness wants room for the largest batches written at once (README "Limits").
        let batches = config.archive.batch.maxBytes.multipliedReportingOverflow(by: config.archive.batch.concurrentWrites)
        (store as? LocalFileStore)?.minimumFreeBytes = batches.overflow ? .max : batches.partialValue
        let template: PathTemplate
        do {
            template = try PathTemplate(config.archive.path)
        } catch {
            throw StartupError(description: "archive.path: \(error)")
        }
        let archiveSettings = ArchiveSettings(
            format: config.archive.format == .raw ? .raw : .ndjson, path: template, useEventTime: config.archive.time == .event,
            maxRecords: config.archive.batch.maxRecords, maxBytes: config.archive.batch.maxBytes,
            maxDelay: config.archive.batch.maxDelay, concurrentWrites: config.archive.batch.concurrentWrites,
            gzipLevel: config.archive.gzipLevel,
            maxPendingRecords: config.archive.maxPendingRecords, maxPendingBytes: config.archive.maxPendingBytes)

        let readiness = self.readiness
        let storeHealth = StoreHealth(store: store, readiness: readiness, logger: logger)
        self.storeHealth = storeHealth
        let namer = ObjectNamer()
        var router = Router()
        var archivers: [RouteArchiver] = []
        let keys = JWKSRegistry(logger: logger)
        for route in config.routes {
            let authenticator = route.auth.map {
                RouteAuthenticator(route: route.name, settings: AuthSettings($0), keys: keys, logger: logger)
            }
            if let authenticator {
                authenticator.prefetchKeys()
            } else {
                logger.warning("route accepts unauthenticated deliveries", metadata: ["route": "\(route.name)", "path": "\(route.path)"])
            }
            // The parser admits the largest route limit; each route enforces its own.
            let limit = route.maxBodyBytes ?? config.server.maxBodyBytes
            let archiver = RouteArchiver(route: route.name, settings: archiveSettings, store: store, namer: namer)
            archivers.append(archiver)
            switch route.kind {
            case .pubsub:
                let handler = PubSubRoute(
                    decoder: PubSubDecoder(route: route.name, delivery: PubSubDecoder.Delivery(rawValue: route.delivery.rawValue) ?? .auto),
                    archiver: archiver, health: storeHealth, logger: logger)
                router.add(route.path, Router.Route(methods: ["POST"], maxBodyBytes: limit,
                                                    admission: admission(by: authenticator), handler: handler.handle))
            case .eventgrid:
                let handler = EventGridRoute(
                    decoder: EventGridDecoder(route: route.name, allowedOrigins: route.allowedOrigins),
                    route: route.name, archiver: archiver, health: storeHealth, logger: logger)
                router.add(route.path, Router.Route(methods: ["POST", "OPTIONS"], maxBodyBytes: limit,
                                                    admission: admission(by: authenticator), handler: handler.handle))
            }
        }
        router.add("/healthz", Router.Route(methods: ["GET"]) { _, respond in respond(Self.healthy) })
        router.add("/readyz", Router.Route(methods: ["GET"]) { _, respond in
            switch readiness.state {
            case .ready: respond(.text(200, "ready"))
            case .starting: respond(.text(503, "starting", headers: HTTPHeaders([("Retry-After", "1")])))
            case .storeFailing:
                respond(.text(503, "store failing: \(readiness.storeFailure ?? "unknown")", headers: HTTPHeaders([("Retry-After", "5")])))
            case .draining: respond(.text(503, "shutting down"))
            }
        })
        self.archivers = archivers

        let server = config.server
        let maxBody = max(server.maxBodyBytes, config.routes.compactMap(\.maxBodyBytes).max() ?? 0)
        let httpSettings = HTTPServerSettings(
            host: settings.host, port: settings.port,
            limits: HTTPParserLimits(maxHeaderBytes: server.maxHeaderBytes, maxBodyBytes: maxBody),
            headerTimeout: server.headerTimeout, bodyTimeout: server.bodyTimeout,
            idleTimeout: server.idleTimeout, maxConnections: server.maxConnections,
            probeConnections: server.probeConnections, probePaths: ["/healthz", "/readyz"],
            maxInFlightBodyBytes: server.maxInFlightBodyBytes,
            maxConcurrentStreams: server.maxConcurrentStreams)
        let protocolLogger = logger
        self.server = HTTPServer(settings: httpSettings, service: router) { status, reason in
            protocolLogger.info("request rejected", metadata: ["status": "\(status)", "cause": "\(reason)"])
        }
    }

    /// Starts listening; returns the bound port. Readiness turns ready once the store probe passes.
    public func start() async throws(StartupError) -> Int {
        let port: Int
        do {
            port = try server.start()
        } catch {
            throw StartupError(description: "\(error)")
        }
        readiness.set(.ready)
        await storeHealth.check()
        logger.info("persistor serving", metadata: [
            "address": "\(settings.host):\(port)", "store": "\(settings.store)",
            "routes": "\(settings.config.routes.map { "\($0.path) (\($0.kind.rawValue))" }.joined(separator: ", "))",
        ])
        return port
    }

    /// SIGTERM: readiness 503 at once, keep serving for `drainDelay` (every answer now with
    /// `Connection: close`, HTTP/2 told by GOAWAY, so senders reconnect to another instance), stop
    /// accepting, answer what is in flight, flush every batch. Returns false if `shutdownGrace`
    /// ran out first.
    public func shutdown() async -> Bool {
        let config = settings.config.server
        let deadline = ContinuousClock.now + config.drainDelay + config.shutdownGrace
        readiness.set(.draining)
        logger.info("shutting down", metadata: ["drainDelay": "\(config.drainDelay)", "grace": "\(config.shutdownGrace)"])
        server.announceShutdown()
        if config.drainDelay > .zero { try? await Task.sleep(for: config.drainDelay) }
        server.stopAccepting()
        server.drainConnections()
        let closed = await server.waitForConnections(until: deadline)
        // Every answered request's batch is already durable; this waits for batches whose
        // senders went away before their answer.
        let flushed = Atomic<Bool>(false)
        let archivers = self.archivers
        Task {
            for archiver in archivers { await archiver.drain() }
            flushed.store(true, ordering: .relaxed)
        }
        while !flushed.load(ordering: .relaxed) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if !closed || !flushed.load(ordering: .relaxed) {
            logger.error("shutdown grace period ran out", metadata: ["openConnections": "\(server.connectionCount)"])
            return false
        }
        logger.info("shutdown complete")
        return true
    }
}

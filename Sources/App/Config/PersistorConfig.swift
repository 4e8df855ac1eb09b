// The configuration model: what a `persistor` YAML file (design.md §2) means once parsed and
// validated. `ConfigLoader` builds it; `PersistorConfig()` is the configuration without a file.
// Values the CLI may still override (host, port, store) stay `nil` here when the file does not set
// them, so flag > environment > file > default precedence can be applied by the caller.

import PersistorAuth
import PersistorStores

/// The whole Persistor configuration.
///
/// `PersistorConfig()` equals the configuration used when no file is given.
public struct PersistorConfig: Sendable, Equatable {
    /// The store URL (`gs://…`, `az://…`, `s3://…`, `file:///…`, `./dir`); `nil` when the file does
    /// not set `store`. URL validation happens where the store is opened.
    public var store: String?
    /// Timeouts and retries of a cloud store's requests (`storeRetry`).
    public var storeRetry: StoreRetryPolicy
    /// Listener limits and timeouts.
    public var server: ServerConfig
    /// The routes, in file order. Without a `routes` key these are `defaultRoutes`.
    public var routes: [RouteConfig]
    /// How records are batched, encoded and named in the store.
    public var archive: ArchiveConfig
    /// Log output format and level.
    public var log: LogConfig

    /// The routes used when the file has no `routes` key: `POST /pubsub` (kind `pubsub`) and
    /// `POST /eventgrid` (kind `eventgrid`), both without auth.
    public static let defaultRoutes: [RouteConfig] = [
        RouteConfig(name: "pubsub", path: "/pubsub", kind: .pubsub),
        RouteConfig(name: "eventgrid", path: "/eventgrid", kind: .eventgrid),
    ]

    public init(store: String? = nil,
                storeRetry: StoreRetryPolicy = StoreRetryPolicy(),
                server: ServerConfig = ServerConfig(),
                routes: [RouteConfig] = PersistorConfig.defaultRoutes,
                archive: ArchiveConfig = ArchiveConfig(),
                log: LogConfig = LogConfig()) {
        self.store = store
        self.storeRetry = storeRetry
        self.server = server
        self.routes = routes
        self.archive = archive
        self.log = log
    }
}

/// The `server` section: listener address, request limits and timeouts.
public struct ServerConfig: Sendable, Equatable {
    /// Listen address; `nil` when not set in the file (the CLI then applies `0.0.0.0`).
    public var host: String?
    /// Listen port, 0...65535; `nil` when not set in the file (the CLI then applies 8080 or `PORT`).
    public var port: Int?
    /// Largest accepted request body in bytes (413 above it); routes may override it.
    public var maxBodyBytes: Int
    /// Largest accepted request head in bytes (431 above it).
    public var maxHeaderBytes: Int
    /// Time allowed to receive a complete request head (408 after it).
    public var headerTimeout: Duration
    /// Longest time allowed without receiving body bytes while a body is being read (408 after it).
    public var bodyTimeout: Duration
    /// How long an idle keep-alive connection stays open.
    public var idleTimeout: Duration
    /// Most connections served at once.
    public var maxConnections: Int
    /// Connections beyond `maxConnections` kept for `GET /healthz` and `/readyz` only.
    public var probeConnections: Int
    /// Request body bytes all connections together may hold until answered (503 beyond).
    public var maxInFlightBodyBytes: Int
    /// HTTP/2 streams one connection may have open at once.
    public var maxConcurrentStreams: Int
    /// After SIGTERM, how long the listener keeps accepting while `/readyz` answers 503 (may be 0).
    public var drainDelay: Duration
    /// Upper bound on the whole shutdown (flush batches, answer in-flight requests).
    public var shutdownGrace: Duration

    public static let defaultMaxBodyBytes = 32 * 1024 * 1024
    public static let defaultMaxHeaderBytes = 64 * 1024

    public init(host: String? = nil,
                port: Int? = nil,
                maxBodyBytes: Int = ServerConfig.defaultMaxBodyBytes,
                maxHeaderBytes: Int = ServerConfig.defaultMaxHeaderBytes,
                headerTimeout: Duration = .seconds(10),
                bodyTimeout: Duration = .seconds(30),
                idleTimeout: Duration = .seconds(60),
                maxConnections: Int = 4096,
                probeConnections: Int = 8,
                maxInFlightBodyBytes: Int = 256 * 1024 * 1024,
                maxConcurrentStreams: Int = 100,
                drainDelay: Duration = .zero,
                shutdownGrace: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.probeConnections = probeConnections
        self.maxInFlightBodyBytes = maxInFlightBodyBytes
        self.maxConcurrentStreams = maxConcurrentStreams
        self.drainDelay = drainDelay
        self.shutdownGrace = shutdownGrace
    }
}

/// Which delivery protocol a route speaks.
public enum RouteKind: String, Sendable, Equatable, CaseIterable {
    /// Google Pub/Sub push (wrapped or unwrapped).
    case pubsub
    /// Azure Event Grid schema and CloudEvents (structured, batch, binary).
    case eventgrid
}

/// How a Pub/Sub route recognises the push shape.
public enum PubSubDelivery: String, Sendable, Equatable, CaseIterable {
    /// Sniff: `x-goog-pubsub-*` headers → unwrapped; a JSON object with a `message` object →
    /// wrapped; anything else → unwrapped without metadata.
    case auto
    /// Always the JSON push envelope (`{"message": …, "subscription": …}`).
    case wrapped
    /// Always the raw payload ("payload unwrapping"), metadata from headers when present.
    case unwrapped
}

/// One HTTP endpoint (`POST path`) and how its deliveries are authenticated and decoded.
public struct RouteConfig: Sendable, Equatable {
    /// Route name, `[A-Za-z0-9._-]{1,64}` (not `.` or `..`); used in object keys and metrics.
    public var name: String
    /// Request path: starts with `/`, no `?`, `#` or whitespace, not `/healthz` or `/readyz`.
    public var path: String
    /// The delivery protocol.
    public var kind: RouteKind
    /// Accepted credentials; `nil` means the route is open to anyone.
    public var auth: AuthConfig?
    /// Pub/Sub push shape; only settable on `pubsub` routes.
    public var delivery: PubSubDelivery
    /// Origins answered in the CloudEvents `OPTIONS` handshake; only settable on `eventgrid` routes.
    public var allowedOrigins: [String]?
    /// Per-route replacement for `server.maxBodyBytes`.
    public var maxBodyBytes: Int?

    public init(name: String,
                path: String,
                kind: RouteKind,
                auth: AuthConfig? = nil,
                delivery: PubSubDelivery = .auto,
                allowedOrigins: [String]? = nil,
                maxBodyBytes: Int? = nil) {
        self.name = name
        self.path = path
        self.kind = kind
        self.auth = auth
        self.delivery = delivery
        self.allowedOrigins = allowedOrigins
        self.maxBodyBytes = maxBodyBytes
    }
}

/// A route's accepted authentication methods; a request passing any one of them is admitted.
/// When `auth` is given in the file, at least one method is present.
public struct AuthConfig: Sendable, Equatable {
    /// Google-signed OIDC ID token (Pub/Sub push authentication).
    public var oidc: OIDCSettings?
    /// Microsoft Entra ID token (Event Grid webhook authentication).
    public var entra: EntraSettings?
    /// Shared secret in a query parameter (YAML keys `param`, `values`).
    public var querySecret: SecretSettings?
    /// Shared secret in a request header (YAML keys `header`, `values`).
    public var headerSecret: SecretSettings?
    /// Tolerance for token `exp`, `nbf` and `iat`.
    public var clockSkew: Duration

    public init(oidc: OIDCSettings? = nil,
                entra: EntraSettings? = nil,
                querySecret: SecretSettings? = nil,
                headerSecret: SecretSettings? = nil,
                clockSkew: Duration = .seconds(60)) {
        self.oidc = oidc
        self.entra = entra
        self.querySecret = querySecret
        self.headerSecret = headerSecret
        self.clockSkew = clockSkew
    }

    /// True when no method is configured (never the case for a loaded configuration).
    public var isEmpty: Bool {
        oidc == nil && entra == nil && querySecret == nil && headerSecret == nil
    }
}

/// Object layout in the store.
public enum ArchiveFormat: String, Sendable, Equatable, CaseIterable {
    /// One gzipped NDJSON object per batch.
    case ndjson
    /// One gzipped object per record (payload bytes) plus a JSON sidecar, create-only.
    case raw
}

/// Which time fills the date tokens of the archive path template.
public enum ArchiveTime: String, Sendable, Equatable, CaseIterable {
    /// When Persistor received the delivery.
    case received
    /// The event's own time (publishTime / eventTime / CloudEvents `time`), else receive time.
    case event
}

/// The `archive` section.
public struct ArchiveConfig: Sendable, Equatable {
    /// Object format.
    public var format: ArchiveFormat
    /// When a batch is sealed (ndjson).
    public var batch: BatchConfig
    /// Object key template (tokens `{route} {source} {yyyy} {MM} {dd} {HH} {mm} {attr:NAME}`),
    /// checked by the archive module.
    public var path: String
    /// Which time the path's date tokens use.
    public var time: ArchiveTime
    /// gzip compression level, 0...9.
    public var gzipLevel: Int
    /// Records a route may hold that are not yet durable (503 beyond).
    public var maxPendingRecords: Int
    /// Encoded bytes a route may hold that are not yet durable (503 beyond).
    public var maxPendingBytes: Int

    public static let defaultPath = "{route}/{yyyy}/{MM}/{dd}/{HH}"

    public init(format: ArchiveFormat = .ndjson,
                batch: BatchConfig = BatchConfig(),
                path: String = ArchiveConfig.defaultPath,
                time: ArchiveTime = .received,
                gzipLevel: Int = 6,
                maxPendingRecords: Int = 100_000,
                maxPendingBytes: Int = 256 * 1024 * 1024) {
        self.format = format
        self.batch = batch
        self.path = path
        self.time = time
        self.gzipLevel = gzipLevel
        self.maxPendingRecords = maxPendingRecords
        self.maxPendingBytes = maxPendingBytes
    }
}

/// Batch sealing limits (`archive.batch`).
public struct BatchConfig: Sendable, Equatable {
    /// Most records in one batch (≥ 1).
    public var maxRecords: Int
    /// Most encoded bytes in one batch (≥ 1).
    public var maxBytes: Int
    /// How long a batch may be held open to grow (0 = write as soon as a write slot is free).
    public var maxDelay: Duration
    /// Batches of one route written at the same time (≥ 1).
    public var concurrentWrites: Int

    public init(maxRecords: Int = 1000, maxBytes: Int = 8 * 1024 * 1024, maxDelay: Duration = .zero,
                concurrentWrites: Int = 1) {
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.maxDelay = maxDelay
        self.concurrentWrites = concurrentWrites
    }
}

/// Log line format.
public enum LogFormat: String, Sendable, Equatable, CaseIterable {
    /// Human-readable lines.
    case text
    /// One JSON object per line.
    case json
}

/// The `log` section.
public struct LogConfig: Sendable, Equatable {
    /// Line format.
    public var format: LogFormat
    /// Minimum level: one of `LogConfig.levels` (swift-log's `Logger.Level` raw values).
    public var level: String

    /// The accepted levels, most verbose first.
    public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    public init(format: LogFormat = .text, level: String = "info") {
        self.format = format
        self.level = level
    }
}

// The configuration as its modules take it (docs/configuration.md): each section decodes straight
// into the settings type of the module that uses it (`HTTPServerSettings`, `ArchiveSettings`,
// `AuthSettings`, `StoreRetryPolicy`); the App owns only what it wires itself: the store URL,
// the routes, shutdown timing and logging. `PersistorConfig()` is the configuration without a file;
// the CLI then applies flags and environment on top (flag > environment > file > default).

import PersistorArchive
import PersistorHTTP
import PersistorStores
import Yams

/// The whole Persistor configuration.
package struct PersistorConfig: Sendable, Equatable {
    /// The store URL (`gs://…`, `az://…`, `s3://…`, `file:///…`, `./dir`). URL validation
    /// happens where the store is opened.
    package var store: String
    /// Timeouts and retries of a cloud store's requests (`storeRetry`).
    package var storeRetry: StoreRetryPolicy
    /// The listener: address, request limits and timeouts (`server`).
    package var server: HTTPServerSettings
    /// Drain and grace periods after SIGTERM (`server.drainDelay`, `server.shutdownGrace`).
    package var shutdown: ShutdownSettings
    /// The routes, in file order. Without a `routes` key these are `defaultRoutes`.
    package var routes: [RouteConfig]
    /// How records are batched, encoded and named in the store (`archive`).
    package var archive: ArchiveSettings
    /// Log output format and level (`log`).
    package var log: LogSettings

    package static let defaultStore = "./persistor-data"

    /// The routes used when the file has no `routes` key: `POST /pubsub` (kind `pubsub`) and
    /// `POST /eventgrid` (kind `eventgrid`), both without auth.
    package static let defaultRoutes: [RouteConfig] = [
        RouteConfig(name: "pubsub", path: "/pubsub", kind: .pubsub),
        RouteConfig(name: "eventgrid", path: "/eventgrid", kind: .eventgrid),
    ]

    package init(
        store: String = PersistorConfig.defaultStore,
        storeRetry: StoreRetryPolicy = StoreRetryPolicy(),
        server: HTTPServerSettings = HTTPServerSettings(),
        shutdown: ShutdownSettings = ShutdownSettings(),
        routes: [RouteConfig] = PersistorConfig.defaultRoutes,
        archive: ArchiveSettings = ArchiveSettings(),
        log: LogSettings = LogSettings()
    ) {
        self.store = store
        self.storeRetry = storeRetry
        self.server = server
        self.shutdown = shutdown
        self.routes = routes
        self.archive = archive
        self.log = log
    }
}

extension PersistorConfig {
    /// The document's top level; an empty document is the default configuration.
    init(_ root: Node?, reader: ConfigReader) throws(ConfigError) {
        self.init()
        guard let root, !reader.isNull(root) else { return }
        guard case .mapping = root else {
            throw reader.fail(
                reader.lineOf(root, or: 1),
                "the configuration must be a mapping (store, storeRetry, server, routes, archive, log), got \(reader.describe(root))")
        }
        let top = try reader.section(
            root, label: "the configuration", path: "", line: 1,
            allowed: ["store", "storeRetry", "server", "routes", "archive", "log"])
        if let field = top["store"] { store = try reader.string(field) }
        if let field = top["storeRetry"] { storeRetry = try reader.storeRetry(field) }
        if let field = top["server"] { (server, shutdown) = try reader.server(field) }
        if let field = top["routes"] { routes = try reader.routes(field) }
        if let field = top["archive"] { archive = try reader.archive(field) }
        if let field = top["log"] { log = try reader.log(field) }
    }
}

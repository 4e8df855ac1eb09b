import PersistorAuth
import PersistorProtocols
import Yams

/// Which delivery protocol a route speaks.
package enum RouteKind: String, Sendable, Equatable, CaseIterable {
    /// Google Pub/Sub push (wrapped or unwrapped).
    case pubsub
    /// Azure Event Grid schema and CloudEvents (structured, batch, binary).
    case eventgrid
}

/// One HTTP endpoint (`POST path`) and how its deliveries are authenticated and decoded.
package struct RouteConfig: Sendable, Equatable {
    /// Route name, `[A-Za-z0-9._-]{1,64}` (not `.` or `..`); used in object keys and logs.
    package var name: String
    /// Request path: starts with `/`, no `?`, `#` or whitespace, not `/healthz` or `/readyz`.
    package var path: String
    /// The delivery protocol.
    package var kind: RouteKind
    /// Accepted credentials; `nil` means the route is open to anyone. A loaded configuration
    /// never holds empty settings here (`auth:` must name a method).
    package var auth: AuthSettings?
    /// Pub/Sub push shape; only settable on `pubsub` routes.
    package var delivery: PubSubDecoder.Delivery
    /// Origins answered in the CloudEvents `OPTIONS` handshake; only settable on `eventgrid` routes.
    package var allowedOrigins: [String]?
    /// Per-route replacement for `server.maxBodyBytes`.
    package var maxBodyBytes: Int?

    package init(
        name: String,
        path: String,
        kind: RouteKind,
        auth: AuthSettings? = nil,
        delivery: PubSubDecoder.Delivery = .auto,
        allowedOrigins: [String]? = nil,
        maxBodyBytes: Int? = nil
    ) {
        self.name = name
        self.path = path
        self.kind = kind
        self.auth = auth
        self.delivery = delivery
        self.allowedOrigins = allowedOrigins
        self.maxBodyBytes = maxBodyBytes
    }
}

extension ConfigReader {
    func routes(_ field: ConfigField) throws(ConfigError) -> [RouteConfig] {
        let items: [Node]
        switch field.value {
        case .sequence(let sequence):
            items = Array(sequence)
        case let node where isNull(node):
            items = []
        default:
            throw fail(field.line, "'routes' must be a list of routes, got \(describe(field.value))")
        }
        guard !items.isEmpty else {
            throw fail(field.line, "'routes' must list at least one route")
        }
        var routes: [RouteConfig] = []
        var names: Set<String> = []
        var paths: Set<String> = []
        for (index, item) in items.enumerated() {
            let (route, nameLine, pathLine) = try route(item, index: index)
            guard names.insert(route.name).inserted else {
                throw fail(nameLine, "duplicate route name '\(route.name)'")
            }
            guard paths.insert(route.path).inserted else {
                throw fail(pathLine, "duplicate route path '\(route.path)'")
            }
            routes.append(route)
        }
        return routes
    }

    /// Returns the route and the lines of its name and path (for duplicate errors).
    func route(_ node: Node, index: Int) throws(ConfigError) -> (RouteConfig, Int, Int) {
        let path = "routes[\(index)]"
        let line = lineOf(node, or: 1)
        guard case .mapping = node else {
            throw fail(line, "\(path) must be a mapping, got \(describe(node))")
        }
        let section = try section(
            node, label: path, path: path, line: line,
            allowed: [
                "name", "path", "kind", "auth", "delivery", "allowedOrigins", "maxBodyBytes",
            ])

        let nameField = try require("name", in: section)
        let name = try string(nameField)
        guard Self.isValidRouteName(name) else {
            throw fail(nameField.line, "invalid route name '\(Self.display(name))': use 1 to 64 characters from A-Z a-z 0-9 . _ - (not '.' or '..')")
        }

        let pathField = try require("path", in: section)
        let routePath = try string(pathField)
        if let problem = Self.routePathProblem(routePath) {
            throw fail(pathField.line, "invalid route path '\(Self.display(routePath))': \(problem)")
        }

        let kind = try choice(try require("kind", in: section), RouteKind.self)
        var route = RouteConfig(name: name, path: routePath, kind: kind)

        if let f = section["delivery"] {
            guard kind == .pubsub else {
                throw fail(f.line, "'delivery' applies only to pubsub routes, not \(kind.rawValue) (\(path))")
            }
            route.delivery = try choice(f, PubSubDecoder.Delivery.self)
        }
        if let f = section["allowedOrigins"] {
            guard kind == .eventgrid else {
                throw fail(f.line, "'allowedOrigins' applies only to eventgrid routes, not \(kind.rawValue) (\(path))")
            }
            route.allowedOrigins = try stringList(f)
        }
        if let f = section["auth"] { route.auth = try auth(f, path: "\(path).auth", routePath: path) }
        if let f = section["maxBodyBytes"] { route.maxBodyBytes = try size(f) }
        return (route, nameField.line, pathField.line)
    }

    static func isValidRouteName(_ name: String) -> Bool {
        guard (1...64).contains(name.utf8.count), name != ".", name != ".." else { return false }
        return name.utf8.allSatisfy {
            isASCIIAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    static func routePathProblem(_ path: String) -> String? {
        if !path.hasPrefix("/") { return "it must start with '/'" }
        if path.contains(where: { $0 == "?" || $0 == "#" }) { return "it must not contain '?' or '#'" }
        if path.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            return "it must not contain whitespace or control characters"
        }
        if path == "/healthz" || path == "/readyz" { return "\(path) is reserved for health checks" }
        return nil
    }
}

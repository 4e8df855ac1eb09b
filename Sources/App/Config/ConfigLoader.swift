// YAML → PersistorConfig. Works on Yams' node tree (not Codable) so that every error can name the
// file, the line and the place in the document: "<source>:<line>: <message>". Unknown keys,
// duplicate keys and wrong node kinds are errors at every level; `${VAR}` in values expands from
// the given environment before the value is typed; `$$` is a literal `$`.

import Foundation
import PersistorAuth
import PersistorStores
import Yams

/// A configuration problem, formatted for the user as `"<source>:<line>: <message>"` (or
/// `"cannot read config file '<path>': <reason>"` when the file itself cannot be read).
public struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Reads and validates the YAML configuration (design.md §2).
public enum ConfigLoader {
    /// Config files larger than this are refused (protects against pointing `--config` at a device).
    static let maxFileBytes = 4 * 1024 * 1024

    /// Reads `path` (UTF-8) and parses it; error messages use `path` as the source name.
    public static func load(file path: String, environment: [String: String]) throws(ConfigError) -> PersistorConfig {
        let text = try readFile(path)
        return try parse(yaml: text, source: path, environment: environment)
    }

    /// Parses YAML text. An empty document (or only comments) gives `PersistorConfig()`.
    /// - Parameters:
    ///   - source: the name errors start with (usually the file path).
    ///   - environment: the variables `${VAR}` expands from.
    public static func parse(yaml: String, source: String, environment: [String: String]) throws(ConfigError) -> PersistorConfig {
        // libyaml only skips a byte-order mark when it detects the encoding itself.
        let yaml = yaml.hasPrefix("\u{FEFF}") ? String(yaml.dropFirst()) : yaml
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml, .default, .default, .utf8)
        } catch {
            throw yamlError(error, yaml: yaml, source: source)
        }
        return try ConfigNodeDecoder(source: source, environment: environment).decode(root)
    }

    // MARK: Reading the file

    static func readFile(_ path: String) throws(ConfigError) -> String {
        func failure(_ code: Int32) -> ConfigError {
            ConfigError("cannot read config file '\(path)': \(String(cString: strerror(code)))")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maxFileBytes {
                throw ConfigError("cannot read config file '\(path)': larger than \(maxFileBytes / (1024 * 1024)) MiB")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError("cannot read config file '\(path)': not valid UTF-8")
        }
        return text
    }

    // MARK: YAML syntax errors

    static func yamlError(_ error: any Error, yaml: String, source: String) -> ConfigError {
        guard let yamlError = error as? YamlError else {
            return ConfigError("\(source): invalid YAML: \(error)")
        }
        switch yamlError {
        case let .scanner(context, problem, mark, _),
             let .parser(context, problem, mark, _),
             let .composer(context, problem, mark, _):
            var message = "\(source):\(mark.line): invalid YAML: \(problem)"
            if let context {
                message += " (\(context.text) on line \(context.mark.line))"
            }
            return ConfigError(message)
        case let .reader(problem, offset, _, _):
            guard let offset else { return ConfigError("\(source): invalid YAML: \(problem)") }
            let line = 1 + yaml.prefix(offset).reduce(0) { $1.isNewline ? $0 + 1 : $0 }
            return ConfigError("\(source):\(line): invalid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return duplicateKeyError(key: duplicates.first ?? "?", first: context.mark, yaml: yaml, source: source)
        default:
            return ConfigError("\(source): invalid YAML: \(yamlError)")
        }
    }

    /// Yams rejects duplicate keys while composing and reports only the first occurrence. To name
    /// the line of the repeat and where it is, rename the reported first occurrence in the text
    /// (prefixing a marker) and compose again, repeating while Yams still finds duplicates (a key
    /// given three times, or other duplicates elsewhere). If that does not work out, report the
    /// first occurrence's line.
    static func duplicateKeyError(key: String, first: Mark, yaml: String, source: String) -> ConfigError {
        var scalars = Array(yaml.unicodeScalars)
        var mark = first
        var ours: [String] = []   // markers put on occurrences of `key`, in order
        var markIsOurs = true
        for round in 0..<16 {
            let marker = "\(duplicateMarkerPrefix)\(round)__"
            guard let position = scalarOffset(of: mark, in: scalars) else { break }
            scalars.insert(contentsOf: marker.unicodeScalars, at: position)
            if markIsOurs { ours.append(marker) }
            do {
                let root = try Yams.compose(yaml: String(String.UnicodeScalarView(scalars)), .default, .default, .utf8)
                guard let root, let (repeatLine, path) = findRepeat(of: key, markers: ours, in: root, path: "") else { break }
                return ConfigError("\(source):\(repeatLine): duplicate key '\(display(key))' \(location(path)) (first on line \(first.line))")
            } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
                // A third occurrence of `key` (or other duplicates elsewhere): rename that one too.
                markIsOurs = duplicates.first == key
                mark = context.mark
            } catch {
                break
            }
        }
        return ConfigError("\(source):\(first.line): duplicate key '\(display(key))'")
    }

    private static let duplicateMarkerPrefix = "zz__persistor_duplicate_"

    /// The offset in `scalars` of a libyaml mark (1-based line, column counted in scalars).
    private static func scalarOffset(of mark: Mark, in scalars: [Unicode.Scalar]) -> Int? {
        var line = 1
        var index = 0
        while line < mark.line, index < scalars.count {
            let c = scalars[index]
            index += 1
            if c == "\n" {
                line += 1
            } else if c == "\r" {
                if index < scalars.count, scalars[index] == "\n" { index += 1 }
                line += 1
            }
        }
        let position = index + mark.column - 1
        guard line == mark.line, position <= scalars.count else { return nil }
        return position
    }

    /// Finds the mapping holding the key renamed with `markers[0]`; returns the line of the next
    /// occurrence of `key` in it (plain or renamed with a later marker of ours) and the mapping's path.
    private static func findRepeat(of key: String, markers: [String], in node: Node, path: String) -> (Int, String)? {
        switch node {
        case .mapping(let mapping):
            if mapping.contains(where: { $0.key.scalar?.string.hasPrefix(markers[0]) == true }) {
                let later = markers.dropFirst()
                guard let repeated = mapping.first(where: { pair in
                          guard let name = pair.key.scalar?.string else { return false }
                          return name == key || later.contains(where: { name.hasPrefix($0) })
                      }),
                      let line = repeated.key.mark?.line else { return nil }
                return (line, path)
            }
            for (childKey, value) in mapping {
                let name = unmarked(childKey.scalar?.string ?? "?")
                if let found = findRepeat(of: key, markers: markers, in: value,
                                          path: path.isEmpty ? name : "\(path).\(name)") {
                    return found
                }
            }
            return nil
        case .sequence(let sequence):
            for (i, value) in sequence.enumerated() {
                if let found = findRepeat(of: key, markers: markers, in: value, path: "\(path)[\(i)]") {
                    return found
                }
            }
            return nil
        default:
            return nil
        }
    }

    /// A key name without a duplicate marker (a parent key that was itself renamed).
    private static func unmarked(_ name: String) -> String {
        guard name.hasPrefix(duplicateMarkerPrefix) else { return name }
        let rest = name.dropFirst(duplicateMarkerPrefix.count).drop(while: { $0.isNumber })
        return String(rest.dropFirst(2))   // the "__" after the round number
    }

    /// A key as messages show it: control characters (a multi-line key) escaped.
    static func display(_ key: String) -> String {
        var out = ""
        for scalar in key.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// "at top level" or "in routes[0].auth".
    static func location(_ path: String) -> String {
        path.isEmpty ? "at top level" : "in \(path)"
    }
}

// MARK: - Node tree → model

/// One `key: value` pair of a mapping, with the key's line.
private struct ConfigField {
    let key: String
    let line: Int
    let value: Node
    /// `'key'`, as messages name it.
    var label: String { "'\(key)'" }
}

/// A checked mapping: only allowed keys, no duplicates.
private struct ConfigSection {
    /// Where the mapping is, e.g. `routes[0].auth.oidc`; empty for the top level.
    let path: String
    /// The line missing-key errors point at (the key that holds the mapping, or its first line).
    let line: Int
    let fields: [String: ConfigField]

    subscript(key: String) -> ConfigField? { fields[key] }
    var isEmpty: Bool { fields.isEmpty }
}

private struct ConfigNodeDecoder {
    let source: String
    let environment: [String: String]

    func fail(_ line: Int, _ message: String) -> ConfigError {
        ConfigError("\(source):\(line): \(message)")
    }

    // MARK: Top level

    func decode(_ root: Node?) throws(ConfigError) -> PersistorConfig {
        guard let root, !isNull(root) else { return PersistorConfig() }
        guard case .mapping = root else {
            throw fail(lineOf(root, or: 1), "the configuration must be a mapping (store, storeRetry, server, routes, archive, log), got \(describe(root))")
        }
        let top = try section(root, label: "the configuration", path: "", line: 1,
                              allowed: ["store", "storeRetry", "server", "routes", "archive", "log"])
        var config = PersistorConfig()
        if let field = top["store"] { config.store = try string(field) }
        if let field = top["storeRetry"] { config.storeRetry = try storeRetry(field) }
        if let field = top["server"] { config.server = try server(field) }
        if let field = top["routes"] { config.routes = try routes(field) }
        if let field = top["archive"] { config.archive = try archive(field) }
        if let field = top["log"] { config.log = try log(field) }
        return config
    }

    // MARK: storeRetry

    func storeRetry(_ field: ConfigField) throws(ConfigError) -> StoreRetryPolicy {
        let section = try section(of: field, path: "storeRetry", allowed: [
            "attemptTimeout", "totalTimeout", "maxAttempts", "initialBackoff", "maxBackoff",
        ])
        var policy = StoreRetryPolicy()
        if let f = section["attemptTimeout"] { policy.attemptTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["totalTimeout"] { policy.totalTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["maxAttempts"] { policy.maxAttempts = try integer(f, in: 1...100) }
        if let f = section["initialBackoff"] { policy.initialBackoff = try duration(f, zeroAllowed: true) }
        if let f = section["maxBackoff"] { policy.maxBackoff = try duration(f, zeroAllowed: true) }
        return policy
    }

    // MARK: server

    func server(_ field: ConfigField) throws(ConfigError) -> ServerConfig {
        let section = try section(of: field, path: "server", allowed: [
            "host", "port", "maxBodyBytes", "maxHeaderBytes", "headerTimeout", "bodyTimeout",
            "idleTimeout", "maxConnections", "probeConnections", "maxInFlightBodyBytes", "maxConcurrentStreams", "drainDelay", "shutdownGrace",
        ])
        var server = ServerConfig()
        if let f = section["host"] { server.host = try string(f) }
        if let f = section["port"] { server.port = try integer(f, in: 0...65535) }
        if let f = section["maxBodyBytes"] { server.maxBodyBytes = try size(f) }
        if let f = section["maxHeaderBytes"] { server.maxHeaderBytes = try size(f) }
        if let f = section["headerTimeout"] { server.headerTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["bodyTimeout"] { server.bodyTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["idleTimeout"] { server.idleTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["maxConnections"] { server.maxConnections = try integer(f, in: 1...Int.max) }
        if let f = section["probeConnections"] { server.probeConnections = try integer(f, in: 0...1024) }
        if let f = section["maxInFlightBodyBytes"] { server.maxInFlightBodyBytes = try size(f) }
        if let f = section["maxConcurrentStreams"] { server.maxConcurrentStreams = try integer(f, in: 1...Int(Int32.max)) }
        if let f = section["drainDelay"] { server.drainDelay = try duration(f, zeroAllowed: true) }
        if let f = section["shutdownGrace"] { server.shutdownGrace = try duration(f, zeroAllowed: false) }
        return server
    }

    // MARK: routes

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
        let section = try section(node, label: path, path: path, line: line, allowed: [
            "name", "path", "kind", "auth", "delivery", "allowedOrigins", "maxBodyBytes",
        ])

        let nameField = try require("name", in: section)
        let name = try string(nameField)
        guard Self.isValidRouteName(name) else {
            throw fail(nameField.line, "invalid route name '\(ConfigLoader.display(name))': use 1 to 64 characters from A-Z a-z 0-9 . _ - (not '.' or '..')")
        }

        let pathField = try require("path", in: section)
        let routePath = try string(pathField)
        if let problem = Self.routePathProblem(routePath) {
            throw fail(pathField.line, "invalid route path '\(ConfigLoader.display(routePath))': \(problem)")
        }

        let kind = try choice(try require("kind", in: section), RouteKind.self)
        var route = RouteConfig(name: name, path: routePath, kind: kind)

        if let f = section["delivery"] {
            guard kind == .pubsub else {
                throw fail(f.line, "'delivery' applies only to pubsub routes, not \(kind.rawValue) (\(path))")
            }
            route.delivery = try choice(f, PubSubDelivery.self)
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

    static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return false
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

    // MARK: auth

    func auth(_ field: ConfigField, path: String, routePath: String) throws(ConfigError) -> AuthConfig {
        let section = try section(of: field, path: path, allowed: ["oidc", "entra", "querySecret", "headerSecret", "clockSkew"])
        guard section.fields.keys.contains(where: { $0 != "clockSkew" }) else {
            throw fail(field.line, "'auth' in \(routePath) must name at least one method (oidc, entra, querySecret, headerSecret); leave 'auth' out for an open route")
        }
        var auth = AuthConfig()
        if let f = section["oidc"] { auth.oidc = try oidc(f, path: "\(path).oidc") }
        if let f = section["entra"] { auth.entra = try entra(f, path: "\(path).entra") }
        if let f = section["querySecret"] {
            auth.querySecret = try secret(f, path: "\(path).querySecret", nameKey: "param")
        }
        if let f = section["headerSecret"] {
            auth.headerSecret = try secret(f, path: "\(path).headerSecret", nameKey: "header")
        }
        if let f = section["clockSkew"] { auth.clockSkew = try duration(f, zeroAllowed: true) }
        return auth
    }

    func oidc(_ field: ConfigField, path: String) throws(ConfigError) -> OIDCSettings {
        let section = try section(of: field, path: path, allowed: ["audience", "serviceAccounts", "issuers", "jwksURL"])
        var oidc = OIDCSettings(audience: try string(try require("audience", in: section)),
                                  serviceAccounts: try stringList(try require("serviceAccounts", in: section)))
        if let f = section["issuers"] { oidc.issuers = try stringList(f) }
        if let f = section["jwksURL"] { oidc.jwksURL = try jwksURL(f) }
        return oidc
    }

    func entra(_ field: ConfigField, path: String) throws(ConfigError) -> EntraSettings {
        let section = try section(of: field, path: path, allowed: ["tenant", "audience", "appId", "issuers", "role", "jwksURL"])
        let tenantField = try require("tenant", in: section)
        let tenant = try string(tenantField)
        // Tokens carry the tenant id (a GUID) in `iss` and `tid`, so a domain name could never match.
        guard UUID(uuidString: tenant) != nil else {
            throw fail(tenantField.line, "invalid tenant '\(ConfigLoader.display(tenant))': use the directory (tenant) id, a GUID")
        }
        let audienceField = try require("audience", in: section)
        let audiences: [String]
        if case .sequence = audienceField.value {
            audiences = try stringList(audienceField)
        } else {
            audiences = [try string(audienceField, expected: "a string or a list of strings")]
        }
        var appId = EntraSettings.eventGridAppId
        var issuers: [String]?
        var role: String?
        var jwksURL: String?
        if let f = section["appId"] { appId = try string(f) }
        if let f = section["issuers"] { issuers = try stringList(f) }
        if let f = section["role"] { role = try string(f) }
        if let f = section["jwksURL"] { jwksURL = try self.jwksURL(f) }
        return EntraSettings(tenant: tenant, audiences: audiences, appId: appId,
                               issuers: issuers, role: role, jwksURL: jwksURL)
    }

    /// Keys must come over https; plain http only from this machine (tests, local proxies).
    func jwksURL(_ field: ConfigField) throws(ConfigError) -> String {
        let text = try string(field)
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else {
            throw fail(field.line, "'jwksURL' must be a URL, got '\(ConfigLoader.display(text))'")
        }
        let loopback = host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw fail(field.line, "'jwksURL' must use https (http only for loopback hosts), got '\(ConfigLoader.display(text))'")
        }
        return text
    }

    func secret(_ field: ConfigField, path: String, nameKey: String) throws(ConfigError) -> SecretSettings {
        let section = try section(of: field, path: path, allowed: [nameKey, "values"])
        let nameField = try require(nameKey, in: section)
        let name = try string(nameField)
        if nameKey == "header", !Self.isHTTPToken(name) {
            throw fail(nameField.line, "'header' must be an HTTP header name, got '\(ConfigLoader.display(name))'")
        }
        return SecretSettings(name: name, values: try stringList(try require("values", in: section)))
    }

    /// RFC 9110 token characters.
    static func isHTTPToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { isASCIIAlphanumeric($0) || "!#$%&'*+-.^_`|~".utf8.contains($0) }
    }

    // MARK: archive, log

    func archive(_ field: ConfigField) throws(ConfigError) -> ArchiveConfig {
        let section = try section(of: field, path: "archive", allowed: ["format", "batch", "path", "time", "gzipLevel",
                                                                              "maxPendingRecords", "maxPendingBytes"])
        var archive = ArchiveConfig()
        if let f = section["format"] { archive.format = try choice(f, ArchiveFormat.self) }
        if let f = section["batch"] {
            let batch = try self.section(of: f, path: "archive.batch", allowed: ["maxRecords", "maxBytes", "maxDelay",
                                                                                   "concurrentWrites"])
            if let f = batch["maxRecords"] { archive.batch.maxRecords = try integer(f, in: 1...Int.max) }
            if let f = batch["maxBytes"] { archive.batch.maxBytes = try size(f) }
            if let f = batch["maxDelay"] { archive.batch.maxDelay = try duration(f, zeroAllowed: true) }
            if let f = batch["concurrentWrites"] { archive.batch.concurrentWrites = try integer(f, in: 1...64) }
        }
        if let f = section["path"] { archive.path = try string(f) }
        if let f = section["time"] { archive.time = try choice(f, ArchiveTime.self) }
        if let f = section["gzipLevel"] { archive.gzipLevel = try integer(f, in: 0...9) }
        if let f = section["maxPendingRecords"] { archive.maxPendingRecords = try integer(f, in: 1...Int.max) }
        if let f = section["maxPendingBytes"] { archive.maxPendingBytes = try size(f) }
        return archive
    }

    func log(_ field: ConfigField) throws(ConfigError) -> LogConfig {
        let section = try section(of: field, path: "log", allowed: ["format", "level"])
        var log = LogConfig()
        if let f = section["format"] { log.format = try choice(f, LogFormat.self) }
        if let f = section["level"] {
            let level = try string(f)
            guard LogConfig.levels.contains(level) else {
                throw fail(f.line, "'level' must be one of \(LogConfig.levels.joined(separator: ", ")), got '\(level)'")
            }
            log.level = level
        }
        return log
    }

    // MARK: Mappings

    /// The mapping held by `field`; a key with no value (`server:`) counts as an empty mapping.
    func section(of field: ConfigField, path: String, allowed: Set<String>) throws(ConfigError) -> ConfigSection {
        try section(field.value, label: field.label, path: path, line: field.line, allowed: allowed)
    }

    func section(_ node: Node, label: String, path: String, line: Int, allowed: Set<String>) throws(ConfigError) -> ConfigSection {
        switch node {
        case .mapping(let mapping):
            var fields: [String: ConfigField] = [:]
            for (keyNode, value) in mapping {
                let keyLine = lineOf(keyNode, or: line)
                guard case .scalar(let key) = keyNode else {
                    throw fail(keyLine, "keys must be strings, got \(describe(keyNode)) \(ConfigLoader.location(path))")
                }
                guard allowed.contains(key.string) else {
                    throw fail(keyLine, "unknown key '\(ConfigLoader.display(key.string))' \(ConfigLoader.location(path))")
                }
                if let earlier = fields[key.string] {   // normally caught by Yams already
                    throw fail(keyLine, "duplicate key '\(key.string)' \(ConfigLoader.location(path)) (first on line \(earlier.line))")
                }
                fields[key.string] = ConfigField(key: key.string, line: keyLine, value: value)
            }
            return ConfigSection(path: path, line: line, fields: fields)
        case let node where isNull(node):
            return ConfigSection(path: path, line: line, fields: [:])
        default:
            throw fail(line, "\(label) must be a mapping, got \(describe(node))")
        }
    }

    func require(_ key: String, in section: ConfigSection) throws(ConfigError) -> ConfigField {
        guard let field = section[key] else {
            throw fail(section.line, "missing required key '\(key)' \(ConfigLoader.location(section.path))")
        }
        return field
    }

    // MARK: Scalars

    /// The expanded text of a scalar value; errors for lists, mappings and empty values.
    func scalarText(_ node: Node, label: String, expected: String, line: Int) throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            throw fail(line, "\(label) must be \(expected), got \(describe(node))")
        }
        return try expand(scalar.string, line: lineOf(node, or: line))
    }

    /// A non-empty string.
    func string(_ field: ConfigField, expected: String = "a string") throws(ConfigError) -> String {
        let text = try scalarText(field.value, label: field.label, expected: expected, line: field.line)
        guard !text.isEmpty else { throw fail(field.line, "\(field.label) must not be empty") }
        return text
    }

    /// A non-empty list of non-empty strings.
    func stringList(_ field: ConfigField) throws(ConfigError) -> [String] {
        guard case .sequence(let sequence) = field.value else {
            throw fail(field.line, "\(field.label) must be a list of strings, got \(describe(field.value))")
        }
        guard !sequence.isEmpty else { throw fail(field.line, "\(field.label) must not be empty") }
        var values: [String] = []
        for (index, item) in sequence.enumerated() {
            let label = "'\(field.key)[\(index)]'"
            let line = lineOf(item, or: field.line)
            let text = try scalarText(item, label: label, expected: "a string", line: line)
            guard !text.isEmpty else { throw fail(line, "\(label) must not be empty") }
            values.append(text)
        }
        return values
    }

    func integer(_ field: ConfigField, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try scalarText(field.value, label: field.label, expected: "an integer", line: field.line)
        guard let value = Int(text) else {
            throw fail(field.line, "\(field.label) must be an integer, got '\(text)'")
        }
        guard range.contains(value) else {
            if range.upperBound == Int.max {
                throw fail(field.line, "\(field.label) must be at least \(range.lowerBound), got \(value)")
            }
            throw fail(field.line, "\(field.label) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
        return value
    }

    func size(_ field: ConfigField) throws(ConfigError) -> Int {
        let text = try scalarText(field.value, label: field.label, expected: "a size like 32MiB", line: field.line)
        do {
            return try ConfigValues.parseSize(text)
        } catch {
            switch error {
            case .malformed:
                throw fail(field.line, "\(field.label) must be a size like 32MiB, got '\(text)'")
            case .notPositive, .negative:
                throw fail(field.line, "\(field.label) must be greater than 0, got '\(text)'")
            case .tooLarge:
                throw fail(field.line, "\(field.label) is too large: '\(text)'")
            }
        }
    }

    func duration(_ field: ConfigField, zeroAllowed: Bool) throws(ConfigError) -> Duration {
        let text = try scalarText(field.value, label: field.label, expected: "a duration like 10s", line: field.line)
        let value: Duration
        do {
            value = try ConfigValues.parseDuration(text)
        } catch {
            switch error {
            case .malformed:
                throw fail(field.line, "\(field.label) must be a duration like 10s or 200ms, got '\(text)'")
            case .negative, .notPositive:
                throw fail(field.line, "\(field.label) must not be negative, got '\(text)'")
            case .tooLarge:
                throw fail(field.line, "\(field.label) is too large: '\(text)'")
            }
        }
        if !zeroAllowed, value == .zero {
            throw fail(field.line, "\(field.label) must be greater than 0, got '\(text)'")
        }
        return value
    }

    func choice<T: RawRepresentable & CaseIterable>(_ field: ConfigField, _ type: T.Type) throws(ConfigError) -> T
    where T.RawValue == String {
        let options = T.allCases.map(\.rawValue).joined(separator: ", ")
        let text = try scalarText(field.value, label: field.label, expected: "one of \(options)", line: field.line)
        guard let value = T(rawValue: text) else {
            throw fail(field.line, "\(field.label) must be one of \(options), got '\(text)'")
        }
        return value
    }

    // MARK: ${VAR} expansion

    /// Replaces `${NAME}` with the variable's value and `$$` with `$`; any other `$` stays as is.
    func expand(_ text: String, line: Int) throws(ConfigError) -> String {
        guard text.contains("$") else { return text }
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if scalars[i] == "$", i + 1 < scalars.count {
                if scalars[i + 1] == "$" {
                    out.append("$")
                    i += 2
                    continue
                }
                if scalars[i + 1] == "{" {
                    guard let close = scalars[(i + 2)...].firstIndex(of: "}") else {
                        throw fail(line, "unterminated '${' in a value (write '$$' for a literal '$')")
                    }
                    let name = String(String.UnicodeScalarView(scalars[(i + 2)..<close]))
                    guard Self.isVariableName(name) else {
                        throw fail(line, "invalid environment variable reference '${\(name)}'")
                    }
                    guard let value = environment[name] else {
                        throw fail(line, "environment variable \(name) is not set")
                    }
                    out.append(contentsOf: value.unicodeScalars)
                    i = close + 1
                    continue
                }
            }
            out.append(scalars[i])
            i += 1
        }
        return String(out)
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "_") }
    }

    // MARK: Node helpers

    func lineOf(_ node: Node, or fallback: Int) -> Int {
        node.mark?.line ?? fallback
    }

    /// A plain empty, `~` or `null` scalar: a key written without a value.
    func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar: return isNull(node) ? "no value" : "a string"
        }
    }
}

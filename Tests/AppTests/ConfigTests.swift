import Foundation
import PersistorApp
import PersistorArchive
import PersistorAuth
import PersistorHTTP
import PersistorStores
import Testing

// MARK: Helpers

private func parse(_ yaml: String, env: [String: String] = [:]) throws(ConfigError) -> PersistorConfig {
    try ConfigLoader.parse(yaml: yaml, source: "config.yaml", environment: env)
}

/// The error message `yaml` is rejected with, or nil when it parses.
private func failure(_ yaml: String, env: [String: String] = [:]) -> String? {
    do {
        _ = try parse(yaml, env: env)
        return nil
    } catch {
        return error.description
    }
}

private func sizeError(_ text: String) -> ConfigValues.ParseError? {
    do {
        _ = try ConfigValues.parseSize(text)
        return nil
    } catch {
        return error
    }
}

private func durationError(_ text: String) -> ConfigValues.ParseError? {
    do {
        _ = try ConfigValues.parseDuration(text)
        return nil
    } catch {
        return error
    }
}

/// The example configuration of README.md#example-configuration, line for line (line numbers
/// matter; only the first route's comment differs there: "used in object keys and logs").
private let designExample = """
    store: gs://my-archive/raw
    routes:
      - name: orders                    # used in object keys and metrics
        path: /pubsub/orders
        kind: pubsub                    # pubsub | eventgrid
        auth:
          oidc:                         # Google-signed ID token in Authorization: Bearer
            audience: https://persistor.example.com/pubsub/orders
            serviceAccounts: [pusher@my-project.iam.gserviceaccount.com]
      - name: blob-events
        path: /eventgrid/blob-events
        kind: eventgrid
        auth:
          querySecret: { param: code, values: ["${EG_SECRET}"] }   # several values = rotation
    archive:
      format: ndjson                    # ndjson (batched) | raw (one object per message)
      batch: { maxRecords: 1000, maxBytes: 8MiB, maxDelay: 200ms }
      path: "{route}/{yyyy}/{MM}/{dd}/{HH}"
    """

/// A one-route file whose route body is `body` (indented by the caller with 4 spaces).
/// Line 1 `routes:`, line 2 `- name: r`, line 3 `path: /r`, then `body` from line 4.
private func oneRoute(kind: String, _ body: String = "") -> String {
    "routes:\n  - name: r\n    path: /r\n    kind: \(kind)\n" + body
}

// MARK: Whole files

@Suite("Config: whole files")
struct ConfigFileTests {
    @Test func designExampleParses() throws {
        let config = try parse(designExample, env: ["EG_SECRET": "s3cret"])
        #expect(config.store == "gs://my-archive/raw")
        #expect(config.server == HTTPServerSettings())
        #expect(config.shutdown == ShutdownSettings())
        #expect(config.log == LogSettings())
        #expect(
            config.routes == [
                RouteConfig(
                    name: "orders", path: "/pubsub/orders", kind: .pubsub,
                    auth: AuthSettings(
                        oidc: OIDCSettings(
                            audience: "https://persistor.example.com/pubsub/orders",
                            serviceAccounts: ["pusher@my-project.iam.gserviceaccount.com"]))),
                RouteConfig(
                    name: "blob-events", path: "/eventgrid/blob-events", kind: .eventgrid,
                    auth: AuthSettings(querySecret: SecretSettings(name: "code", values: ["s3cret"]))),
            ])
        let oidc = try #require(config.routes[0].auth?.oidc)
        #expect(oidc.issuers == ["accounts.google.com", "https://accounts.google.com"])
        #expect(oidc.jwksURL == "https://www.googleapis.com/oauth2/v3/certs")
        #expect(config.routes[0].delivery == .auto)
        #expect(config.routes[1].allowedOrigins == nil)
        #expect(
            config.archive
                == ArchiveSettings(
                    format: .ndjson,
                    batch: ArchiveSettings.Batch(maxRecords: 1000, maxBytes: 8 * 1024 * 1024, maxDelay: .milliseconds(200)),
                    path: try PathTemplate("{route}/{yyyy}/{MM}/{dd}/{HH}"),
                    time: .received,
                    gzipLevel: 6))
    }

    @Test func designExampleWithoutSecretNamesVariableAndLine() {
        #expect(failure(designExample) == "config.yaml:14: environment variable EG_SECRET is not set")
    }

    @Test(arguments: ["", "\n\n", "# only a comment\n", "# one\n  # two\n\n# three", "---\n", "---\n# c\n...\n", "~\n"])
    func emptyFileGivesDefaults(yaml: String) throws {
        #expect(try parse(yaml) == PersistorConfig())
    }

    @Test func defaults() {
        let config = PersistorConfig()
        #expect(config.store == "./persistor-data")
        #expect(config.server.host == "0.0.0.0")
        #expect(config.server.port == 8080)
        #expect(config.server.limits.maxBodyBytes == 33_554_432)
        #expect(config.server.limits.maxHeaderBytes == 65_536)
        #expect(config.server.headerTimeout == .seconds(10))
        #expect(config.server.bodyTimeout == .seconds(30))
        #expect(config.server.idleTimeout == .seconds(60))
        #expect(config.server.maxConnections == 4096)
        #expect(config.server.maxConcurrentStreams == 100)
        #expect(config.shutdown.drainDelay == .zero)
        #expect(config.shutdown.shutdownGrace == .seconds(10))
        #expect(
            config.routes == [
                RouteConfig(name: "pubsub", path: "/pubsub", kind: .pubsub),
                RouteConfig(name: "eventgrid", path: "/eventgrid", kind: .eventgrid),
            ])
        #expect(config.routes == PersistorConfig.defaultRoutes)
        #expect(config.routes.allSatisfy { $0.auth == nil && $0.delivery == .auto && $0.maxBodyBytes == nil })
        #expect(config.archive.format == .ndjson)
        #expect(config.archive.batch == ArchiveSettings.Batch(maxRecords: 1000, maxBytes: 8_388_608, maxDelay: .zero))
        #expect(config.archive.path.text == "{route}/{yyyy}/{MM}/{dd}/{HH}")
        #expect(config.archive.time == .received)
        #expect(config.archive.gzipLevel == 6)
        #expect(config.log.format == .text)
        #expect(config.log.level == .info)
    }

    @Test func fileWithoutRoutesKeepsDefaultRoutes() throws {
        let config = try parse("store: ./data\nlog: { level: debug }\n")
        #expect(config.routes == PersistorConfig.defaultRoutes)
        #expect(config.store == "./data")
        #expect(config.log.level == .debug)
    }

    @Test func sectionsWithoutValuesAreDefaults() throws {
        #expect(try parse("server:\narchive:\n  batch:\nlog: ~\n") == PersistorConfig())
        #expect(try parse("server: {}\narchive: {batch: {}}\nlog: {}\n") == PersistorConfig())
    }

    @Test func everySetting() throws {
        let yaml = """
            store: "s3://bucket/prefix"
            storeRetry:
              attemptTimeout: 2s
              totalTimeout: 3s
              maxAttempts: 2
              initialBackoff: 50ms
              maxBackoff: 1s
            server:
              host: 127.0.0.1
              port: 9090
              maxBodyBytes: 16 MiB
              maxHeaderBytes: 8KiB
              headerTimeout: 5s
              bodyTimeout: 1.5m
              idleTimeout: 2m
              maxConnections: 100
              maxInFlightBodyBytes: 64MiB
              maxConcurrentStreams: 50
              drainDelay: 3s
              shutdownGrace: 20s
            routes:
              - name: a.b_c-1
                path: /p
                kind: pubsub
                delivery: unwrapped
                maxBodyBytes: 1MB
              - name: eg
                path: /e/
                kind: eventgrid
                allowedOrigins: ["*", https://eventgrid.azure.net]
            archive:
              format: raw
              batch:
                maxRecords: 1
                maxBytes: 1
                maxDelay: 0
                concurrentWrites: 4
              path: dt={yyyy}-{MM}-{dd}/hour={HH}
              time: event
              gzipLevel: 0
              maxPendingRecords: 500
              maxPendingBytes: 10MiB
            log:
              format: json
              level: critical
            """
        let config = try parse(yaml)
        #expect(
            config
                == PersistorConfig(
                    store: "s3://bucket/prefix",
                    storeRetry: StoreRetryPolicy(
                        attemptTimeout: .seconds(2), totalTimeout: .seconds(3), maxAttempts: 2,
                        initialBackoff: .milliseconds(50), maxBackoff: .seconds(1)),
                    server: HTTPServerSettings(
                        host: "127.0.0.1", port: 9090,
                        limits: HTTPParserLimits(maxHeaderBytes: 8192, maxBodyBytes: 16 << 20),
                        headerTimeout: .seconds(5), bodyTimeout: .seconds(90), idleTimeout: .seconds(120),
                        maxConnections: 100, maxInFlightBodyBytes: 64 << 20, maxConcurrentStreams: 50),
                    shutdown: ShutdownSettings(drainDelay: .seconds(3), shutdownGrace: .seconds(20)),
                    routes: [
                        RouteConfig(name: "a.b_c-1", path: "/p", kind: .pubsub, delivery: .unwrapped, maxBodyBytes: 1_000_000),
                        RouteConfig(
                            name: "eg", path: "/e/", kind: .eventgrid,
                            allowedOrigins: ["*", "https://eventgrid.azure.net"]),
                    ],
                    archive: ArchiveSettings(
                        format: .raw,
                        batch: ArchiveSettings.Batch(maxRecords: 1, maxBytes: 1, maxDelay: .zero, concurrentWrites: 4),
                        path: try PathTemplate("dt={yyyy}-{MM}-{dd}/hour={HH}"), time: .event, gzipLevel: 0,
                        maxPendingRecords: 500, maxPendingBytes: 10 << 20),
                    log: LogSettings(format: .json, level: .critical)))
    }

    @Test func topLevelMustBeAMapping() {
        #expect(
            failure("- a\n- b\n")
                == "config.yaml:1: the configuration must be a mapping (store, storeRetry, server, routes, archive, log), got a list")
        #expect(
            failure("hello\n")
                == "config.yaml:1: the configuration must be a mapping (store, storeRetry, server, routes, archive, log), got a string")
    }

    @Test func yamlSyntaxErrorNamesLine() {
        let message = failure("server:\n  port: 1\n  host: [a, b\nlog: {}\n")
        #expect(message?.hasPrefix("config.yaml:4: invalid YAML: ") == true, "\(message ?? "nil")")
        let tab = failure("server:\n\tport: 1\n")
        #expect(tab?.hasPrefix("config.yaml:2: invalid YAML: ") == true, "\(tab ?? "nil")")
    }

    @Test func severalDocumentsAreRejected() {
        let message = failure("store: a\n---\nstore: b\n")
        #expect(message?.hasPrefix("config.yaml:2: invalid YAML: but found another document") == true, "\(message ?? "nil")")
    }
}

// MARK: Sizes and durations

@Suite("Config: sizes and durations")
struct ConfigValueTests {
    @Test(arguments: [
        ("1", 1), ("65536", 65_536), ("007", 7),
        ("1B", 1), ("1 B", 1),
        ("1KB", 1_000), ("2MB", 2_000_000), ("3GB", 3_000_000_000),
        ("1KiB", 1_024), ("64 KiB", 65_536), ("32MiB", 33_554_432), ("8 MiB", 8_388_608), ("2GiB", 2_147_483_648),
        ("9223372036854775807", Int.max),
    ])
    func validSizes(text: String, bytes: Int) throws {
        #expect(try ConfigValues.parseSize(text) == bytes)
    }

    @Test(arguments: [
        "", "lots", "MiB", "1.5MiB", "1,5MiB", "32mib", "32 mib", "32kb", "32Kb", "32kib", "32Mi", "1TB",
        "32  MiB", " 32MiB", "32MiB ", "32 ", "1e6", "0x10", "1_000", "+5", "5 5", "١٢", "-", "-MiB",
    ])
    func malformedSizes(text: String) {
        #expect(sizeError(text) == .malformed)
    }

    @Test(arguments: ["0", "0B", "0 MiB", "-1", "-5KiB", "000"])
    func nonPositiveSizes(text: String) {
        #expect(sizeError(text) == .notPositive)
    }

    @Test(arguments: ["9223372036854775808", "99999999999999999999", "9999999999GiB", "9223372036854775807KB"])
    func overflowingSizes(text: String) {
        #expect(sizeError(text) == .tooLarge)
    }

    @Test(arguments: [
        ("0", Duration.zero), ("0s", .zero), ("0ms", .zero), ("0.0h", .zero),
        ("200ms", .milliseconds(200)), ("1.5s", .milliseconds(1500)), ("10s", .seconds(10)), ("2m", .seconds(120)),
        ("1h", .seconds(3600)), ("0.25h", .seconds(900)), ("1.5 s", .milliseconds(1500)), ("0.5ms", .microseconds(500)),
        ("1.123456789s", .nanoseconds(1_123_456_789)), ("1.0000000009s", .seconds(1)), ("0.1m", .seconds(6)),
        ("90s", .seconds(90)), ("007s", .seconds(7)),
    ])
    func validDurations(text: String, duration: Duration) throws {
        #expect(try ConfigValues.parseDuration(text) == duration)
    }

    @Test(arguments: [
        "", "10", "1.5", "s", "ms", ".5s", "1.s", "1..5s", "10 sec", "10S", "10MS", "1d", "1e3ms", "10s ", " 10s",
        "10  s", "1,5s", "ten seconds", "+1s", "1h30m", "00", "0.0",
    ])
    func malformedDurations(text: String) {
        #expect(durationError(text) == .malformed)
    }

    @Test(arguments: ["-1s", "-0.5m", "-0s", "-200ms"])
    func negativeDurations(text: String) {
        #expect(durationError(text) == .negative)
    }

    @Test(arguments: ["9223372036854775808s", "2562048h", "9999999999999999999ms"])
    func overflowingDurations(text: String) {
        #expect(durationError(text) == .tooLarge)
    }

    @Test func sizeAndDurationErrorsInTheFile() {
        #expect(
            failure("server:\n  port: 80\n  maxBodyBytes: lots\n")
                == "config.yaml:3: 'maxBodyBytes' must be a size like 32MiB, got 'lots'")
        #expect(
            failure("server:\n  maxHeaderBytes: 0\n")
                == "config.yaml:2: 'maxHeaderBytes' must be greater than 0, got '0'")
        #expect(
            failure("server:\n  maxBodyBytes: 99999999999GiB\n")
                == "config.yaml:2: 'maxBodyBytes' is too large: '99999999999GiB'")
        #expect(
            failure("server:\n  maxBodyBytes: [1]\n")
                == "config.yaml:2: 'maxBodyBytes' must be a size like 32MiB, got a list")
        #expect(
            failure("server:\n  headerTimeout: soon\n")
                == "config.yaml:2: 'headerTimeout' must be a duration like 10s or 200ms, got 'soon'")
        #expect(
            failure("server:\n  idleTimeout: -5s\n")
                == "config.yaml:2: 'idleTimeout' must not be negative, got '-5s'")
        #expect(
            failure("server:\n  headerTimeout: 0s\n")
                == "config.yaml:2: 'headerTimeout' must be greater than 0, got '0s'")
        #expect(
            failure("server:\n  bodyTimeout: 0\n")
                == "config.yaml:2: 'bodyTimeout' must be greater than 0, got '0'")
        #expect(
            failure("server:\n  shutdownGrace: 0\n")
                == "config.yaml:2: 'shutdownGrace' must be greater than 0, got '0'")
        #expect(
            failure("archive:\n  batch: { maxBytes: 1.5MiB }\n")
                == "config.yaml:2: 'maxBytes' must be a size like 32MiB, got '1.5MiB'")
        #expect(
            failure(oneRoute(kind: "pubsub", "    maxBodyBytes: 0\n"))
                == "config.yaml:5: 'maxBodyBytes' must be greater than 0, got '0'")
    }

    @Test func zeroDelaysAreAllowed() throws {
        let config = try parse("server: { drainDelay: 0 }\narchive: { batch: { maxDelay: 0s } }\n")
        #expect(config.shutdown.drainDelay == .zero)
        #expect(config.archive.batch.maxDelay == .zero)
    }
}

// MARK: Structure errors

@Suite("Config: keys and node kinds")
struct ConfigStructureTests {
    @Test func unknownKeyAtTopLevel() {
        #expect(failure("store: x\nstroe: y\n") == "config.yaml:2: unknown key 'stroe' at top level")
    }

    @Test func unknownKeyInServer() {
        #expect(failure("server:\n  port: 1\n\n  maxBodySize: 1MiB\n") == "config.yaml:4: unknown key 'maxBodySize' in server")
    }

    @Test func unknownKeyInRoute() {
        #expect(failure(oneRoute(kind: "pubsub", "    method: POST\n")) == "config.yaml:5: unknown key 'method' in routes[0]")
    }

    @Test func unknownKeyInOIDC() {
        let yaml = designExample.replacingOccurrences(of: "audience:", with: "audiance:")
        #expect(failure(yaml, env: ["EG_SECRET": "x"]) == "config.yaml:8: unknown key 'audiance' in routes[0].auth.oidc")
    }

    @Test func unknownKeysElsewhere() {
        #expect(failure("archive:\n  batch: {maxRecord: 1}\n") == "config.yaml:2: unknown key 'maxRecord' in archive.batch")
        #expect(failure("log:\n  colour: true\n") == "config.yaml:2: unknown key 'colour' in log")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      querySecret: {name: code, values: [a]}\n"))
                == "config.yaml:6: unknown key 'name' in routes[0].auth.querySecret")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      basic: {}\n"))
                == "config.yaml:6: unknown key 'basic' in routes[0].auth")
    }

    @Test func keysAreNotExpanded() {
        #expect(failure("${KEY}: 1\n", env: ["KEY": "store"]) == "config.yaml:1: unknown key '${KEY}' at top level")
    }

    @Test func duplicateKeys() {
        // Yams refuses duplicates while composing and marks the first occurrence: that line is reported.
        let again = "it is given again later in the same mapping"
        #expect(failure("server:\n  port: 1\n  host: h\n  port: 2\n") == "config.yaml:2: duplicate key 'port': \(again)")
        #expect(failure("store: a\nlog: {}\nstore: b\n") == "config.yaml:1: duplicate key 'store': \(again)")
        #expect(failure("archive:\n  batch: { maxRecords: 1, maxRecords: 2 }\n") == "config.yaml:2: duplicate key 'maxRecords': \(again)")
        #expect(failure(oneRoute(kind: "pubsub", "    kind: eventgrid\n")) == "config.yaml:4: duplicate key 'kind': \(again)")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc:\n        audience: a\n        \"audience\": b\n"))
                == "config.yaml:7: duplicate key 'audience': \(again)")
        #expect(failure("server:\n  port: 1\n  port: 2\n  port: 3\n") == "config.yaml:2: duplicate key 'port': \(again)")
        // Duplicates in two mappings: the first one Yams finds (the inner mapping is composed first).
        #expect(failure("store: a\nstore: b\nserver:\n  port: 1\n  port: 1\n") == "config.yaml:4: duplicate key 'port': \(again)")
        #expect(failure("routes:\n  - name: a\n  - name: b\n    path: /b\n    name: c\n") == "config.yaml:3: duplicate key 'name': \(again)")
    }

    @Test func wrongNodeKinds() {
        #expect(failure("server: [1, 2]\n") == "config.yaml:1: 'server' must be a mapping, got a list")
        #expect(failure("server: 8080\n") == "config.yaml:1: 'server' must be a mapping, got a string")
        #expect(failure("archive:\n  batch: 10\n") == "config.yaml:2: 'batch' must be a mapping, got a string")
        #expect(failure("routes: {name: a}\n") == "config.yaml:1: 'routes' must be a list of routes, got a mapping")
        #expect(failure("routes:\n  - orders\n") == "config.yaml:2: routes[0] must be a mapping, got a string")
        #expect(failure("store: [a]\n") == "config.yaml:1: 'store' must be a string, got a list")
        #expect(failure("store:\n") == "config.yaml:1: 'store' must be a string, got no value")
        #expect(failure("store: \"\"\n") == "config.yaml:1: 'store' must not be empty")
        #expect(failure("server:\n  port: {a: 1}\n") == "config.yaml:2: 'port' must be an integer, got a mapping")
        #expect(failure("server:\n  port: eighty\n") == "config.yaml:2: 'port' must be an integer, got 'eighty'")
        #expect(failure("server:\n  port: 80.5\n") == "config.yaml:2: 'port' must be an integer, got '80.5'")
        #expect(failure(oneRoute(kind: "[pubsub]")) == "config.yaml:4: 'kind' must be one of pubsub, eventgrid, got a list")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc:\n        audience: [a]\n        serviceAccounts: [b]\n"))
                == "config.yaml:7: 'audience' must be a string, got a list")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc:\n        audience: a\n        serviceAccounts: b@x\n"))
                == "config.yaml:8: 'serviceAccounts' must be a list of strings, got a string")
        #expect(
            failure(
                oneRoute(kind: "pubsub", "    auth:\n      oidc:\n        audience: a\n        serviceAccounts:\n          - b@x\n          - [c]\n"))
                == "config.yaml:10: 'serviceAccounts[1]' must be a string, got a list")
        #expect(failure(oneRoute(kind: "pubsub", "    auth: [oidc]\n")) == "config.yaml:5: 'auth' must be a mapping, got a list")
        #expect(failure("[a]: 1\n") == "config.yaml:1: keys must be strings, got a list at top level")
    }

    @Test func enumValues() {
        #expect(failure("archive: { format: parquet }\n") == "config.yaml:1: 'format' must be one of ndjson, raw, got 'parquet'")
        #expect(failure("archive: { time: publish }\n") == "config.yaml:1: 'time' must be one of received, event, got 'publish'")
        #expect(failure("log: { format: JSON }\n") == "config.yaml:1: 'format' must be one of text, json, got 'JSON'")
        #expect(
            failure("log: { level: verbose }\n")
                == "config.yaml:1: 'level' must be one of trace, debug, info, notice, warning, error, critical, got 'verbose'")
        #expect(failure(oneRoute(kind: "webhook")) == "config.yaml:4: 'kind' must be one of pubsub, eventgrid, got 'webhook'")
        #expect(
            failure(oneRoute(kind: "pubsub", "    delivery: push\n"))
                == "config.yaml:5: 'delivery' must be one of auto, wrapped, unwrapped, got 'push'")
    }

    @Test(arguments: ["trace", "debug", "info", "notice", "warning", "error", "critical"])
    func logLevels(level: String) throws {
        #expect(try parse("log:\n  level: \(level)\n").log.level.rawValue == level)
    }
}

// MARK: Numbers and ranges

@Suite("Config: ranges")
struct ConfigRangeTests {
    @Test func portRange() throws {
        #expect(try parse("server: { port: 0 }").server.port == 0)
        #expect(try parse("server: { port: 65535 }").server.port == 65535)
        #expect(failure("server: { port: 65536 }") == "config.yaml:1: 'port' must be between 0 and 65535, got 65536")
        #expect(failure("server: { port: -1 }") == "config.yaml:1: 'port' must be between 0 and 65535, got -1")
    }

    @Test func concurrentWritesRange() throws {
        #expect(try parse("archive: { gzipLevel: 6 }").archive.batch.concurrentWrites == 1)
        #expect(try parse("archive: { batch: { concurrentWrites: 64 } }").archive.batch.concurrentWrites == 64)
        #expect(failure("archive:\n  batch:\n    concurrentWrites: 0\n") == "config.yaml:3: 'concurrentWrites' must be between 1 and 64, got 0")
    }

    @Test func gzipLevelRange() throws {
        #expect(try parse("archive: { gzipLevel: 0 }").archive.gzipLevel == 0)
        #expect(try parse("archive: { gzipLevel: 9 }").archive.gzipLevel == 9)
        #expect(failure("archive:\n  gzipLevel: 10\n") == "config.yaml:2: 'gzipLevel' must be between 0 and 9, got 10")
        #expect(failure("archive:\n  gzipLevel: -1\n") == "config.yaml:2: 'gzipLevel' must be between 0 and 9, got -1")
    }

    @Test func lowerBounds() {
        #expect(failure("archive:\n  batch:\n    maxRecords: 0\n") == "config.yaml:3: 'maxRecords' must be at least 1, got 0")
        #expect(failure("archive:\n  batch:\n    maxBytes: 0\n") == "config.yaml:3: 'maxBytes' must be greater than 0, got '0'")
        #expect(failure("server:\n  maxConnections: 0\n") == "config.yaml:2: 'maxConnections' must be at least 1, got 0")
        #expect(failure("server:\n  maxConcurrentStreams: 0\n") == "config.yaml:2: 'maxConcurrentStreams' must be between 1 and 2147483647, got 0")
    }

    @Test func emptyStrings() {
        #expect(failure("server:\n  host: ''\n") == "config.yaml:2: 'host' must not be empty")
        #expect(failure("archive:\n  path: \"\"\n") == "config.yaml:2: 'path' must not be empty")
    }
}

// MARK: Environment expansion

@Suite("Config: ${VAR} expansion")
struct ConfigEnvironmentTests {
    @Test func expandsBeforeTyping() throws {
        let config = try parse(
            "server:\n  port: ${PORT}\n  maxBodyBytes: ${SIZE}MiB\n  headerTimeout: ${T}\n",
            env: ["PORT": "8081", "SIZE": "4", "T": "2s"])
        #expect(config.server.port == 8081)
        #expect(config.server.limits.maxBodyBytes == 4 << 20)
        #expect(config.server.headerTimeout == .seconds(2))
    }

    @Test func expandsInsideStringsAndLists() throws {
        let yaml = oneRoute(
            kind: "pubsub",
            """
                auth:
                  oidc:
                    audience: https://${HOST}/pubsub/${ROUTE}
                    serviceAccounts: ["${SA}", plain@x]

            """)
        let config = try parse(yaml, env: ["HOST": "h.example", "ROUTE": "r", "SA": "sa@p.iam"])
        let oidc = try #require(config.routes[0].auth?.oidc)
        #expect(oidc.audience == "https://h.example/pubsub/r")
        #expect(oidc.serviceAccounts == ["sa@p.iam", "plain@x"])
    }

    @Test func unsetVariableNamesItAndLine() {
        #expect(failure("store: gs://b\nserver:\n  port: ${PORT}\n") == "config.yaml:3: environment variable PORT is not set")
        #expect(failure("store: \"${A}/${B}\"\n", env: ["A": "x"]) == "config.yaml:1: environment variable B is not set")
    }

    @Test func dollarDollarIsALiteralDollar() throws {
        #expect(try parse("store: a$$b\n").store == "a$b")
        #expect(try parse("store: \"$${NOT_EXPANDED}\"\n").store == "${NOT_EXPANDED}")
        #expect(try parse("store: \"$$$${X}\"\n", env: ["X": "v"]).store == "$${X}")
        #expect(try parse("store: \"$$${X}\"\n", env: ["X": "v"]).store == "$v")
        #expect(try parse("store: cost$5$\n").store == "cost$5$")
    }

    @Test func expandedValueIsNotExpandedAgain() throws {
        #expect(try parse("store: ${A}\n", env: ["A": "${B}$$"]).store == "${B}$$")
    }

    @Test func emptyVariableCountsAsSetButEmpty() {
        #expect(failure("store: ${S}\n", env: ["S": ""]) == "config.yaml:1: 'store' must not be empty")
        #expect(
            failure(
                oneRoute(kind: "eventgrid", "    auth:\n      headerSecret: {header: X-Key, values: [\"${K}\"]}\n"),
                env: ["K": ""])
                == "config.yaml:6: 'values[0]' must not be empty")
    }

    @Test func malformedReferences() {
        #expect(
            failure("store: ${ABC\n")
                == "config.yaml:1: unterminated '${' in a value (write '$$' for a literal '$')")
        #expect(failure("store: ${1A}\n") == "config.yaml:1: invalid environment variable reference '${1A}'")
        #expect(failure("store: ${}\n") == "config.yaml:1: invalid environment variable reference '${}'")
        #expect(failure("store: ${A:-x}\n") == "config.yaml:1: invalid environment variable reference '${A:-x}'")
    }
}

// MARK: Routes

@Suite("Config: routes")
struct ConfigRouteTests {
    @Test func atLeastOneRoute() {
        #expect(failure("routes: []\n") == "config.yaml:1: 'routes' must list at least one route")
        #expect(failure("store: x\nroutes:\n") == "config.yaml:2: 'routes' must list at least one route")
    }

    @Test func requiredRouteKeys() {
        #expect(failure("routes:\n  - name: a\n    path: /a\n") == "config.yaml:2: missing required key 'kind' in routes[0]")
        #expect(failure("routes:\n  - path: /a\n    kind: pubsub\n") == "config.yaml:2: missing required key 'name' in routes[0]")
        #expect(failure("routes:\n  - {name: a, kind: pubsub}\n") == "config.yaml:2: missing required key 'path' in routes[0]")
    }

    @Test func duplicateRouteName() {
        let yaml = """
            routes:
              - name: orders
                path: /a
                kind: pubsub
              - name: orders
                path: /b
                kind: pubsub
            """
        #expect(failure(yaml) == "config.yaml:5: duplicate route name 'orders'")
    }

    @Test func duplicateRoutePath() {
        let yaml = """
            routes:
              - name: a
                path: /pubsub
                kind: pubsub
              - name: b
                kind: eventgrid

                path: /pubsub
            """
        #expect(failure(yaml) == "config.yaml:8: duplicate route path '/pubsub'")
    }

    @Test func pathsAreCaseSensitive() throws {
        let config = try parse("routes:\n  - {name: a, path: /Hook, kind: pubsub}\n  - {name: b, path: /hook, kind: pubsub}\n")
        #expect(config.routes.map(\.path) == ["/Hook", "/hook"])
    }

    @Test(arguments: [
        ("pubsub", "it must start with '/'"),
        ("\"/a b\"", "it must not contain whitespace or control characters"),
        ("\"/a\\tb\"", "it must not contain whitespace or control characters"),
        ("/a?code=1", "it must not contain '?' or '#'"),
        ("\"/a#frag\"", "it must not contain '?' or '#'"),
        ("/healthz", "/healthz is reserved for health checks"),
        ("/readyz", "/readyz is reserved for health checks"),
    ])
    func invalidRoutePath(path: String, problem: String) throws {
        let message = try #require(failure("routes:\n  - name: a\n    path: \(path)\n    kind: pubsub\n"))
        #expect(message.hasPrefix("config.yaml:3: invalid route path '"))
        #expect(message.hasSuffix("': \(problem)"))
    }

    @Test func invalidRoutePathIsShownEscaped() {
        #expect(
            failure("routes:\n  - name: a\n    path: \"/a\\tb\"\n    kind: pubsub\n")
                == "config.yaml:3: invalid route path '/a\\tb': it must not contain whitespace or control characters")
    }

    @Test(arguments: ["\"a b\"", "\".\"", "\"..\"", "a/b", "ordres!", "\"é\"", String(repeating: "x", count: 65)])
    func invalidRouteName(name: String) throws {
        let message = try #require(failure("routes:\n  - name: \(name)\n    path: /a\n    kind: pubsub\n"))
        #expect(message.hasPrefix("config.yaml:2: invalid route name '"))
        #expect(message.hasSuffix("': use 1 to 64 characters from A-Z a-z 0-9 . _ - (not '.' or '..')"))
    }

    @Test func longestRouteName() throws {
        let name = String(repeating: "x", count: 64)
        #expect(try parse("routes:\n  - {name: \(name), path: /a, kind: pubsub}\n").routes[0].name == name)
    }

    @Test func deliveryOnlyOnPubSub() throws {
        #expect(try parse(oneRoute(kind: "pubsub", "    delivery: wrapped\n")).routes[0].delivery == .wrapped)
        #expect(
            failure(oneRoute(kind: "eventgrid", "    delivery: auto\n"))
                == "config.yaml:5: 'delivery' applies only to pubsub routes, not eventgrid (routes[0])")
    }

    @Test func allowedOriginsOnlyOnEventGrid() throws {
        #expect(
            try parse(oneRoute(kind: "eventgrid", "    allowedOrigins: [eventgrid.azure.net]\n")).routes[0].allowedOrigins
                == ["eventgrid.azure.net"])
        #expect(
            failure(oneRoute(kind: "pubsub", "    allowedOrigins: [\"*\"]\n"))
                == "config.yaml:5: 'allowedOrigins' applies only to eventgrid routes, not pubsub (routes[0])")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    allowedOrigins: []\n"))
                == "config.yaml:5: 'allowedOrigins' must not be empty")
    }
}

// MARK: Auth

@Suite("Config: auth")
struct ConfigAuthTests {
    @Test func emptyAuthIsRejected() {
        let expected =
            "config.yaml:5: 'auth' in routes[0] must name at least one method (oidc, entra, querySecret, headerSecret); leave 'auth' out for an open route"
        #expect(failure(oneRoute(kind: "pubsub", "    auth: {}\n")) == expected)
        #expect(failure(oneRoute(kind: "pubsub", "    auth:\n")) == expected)
    }

    @Test func oidcMissingAudience() {
        let yaml = oneRoute(kind: "pubsub", "    auth:\n      oidc:\n        serviceAccounts: [a@b]\n")
        #expect(failure(yaml) == "config.yaml:6: missing required key 'audience' in routes[0].auth.oidc")
    }

    @Test func oidcMissingServiceAccountsInSecondRoute() {
        let yaml = """
            routes:
              - name: a
                path: /a
                kind: pubsub
              - name: b
                path: /b
                kind: pubsub
                auth:
                  querySecret: {param: token, values: [x]}

                  oidc:
                    audience: https://x/b
            """
        #expect(failure(yaml) == "config.yaml:11: missing required key 'serviceAccounts' in routes[1].auth.oidc")
    }

    @Test func oidcEmptyOrBlankValues() {
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc: {audience: a, serviceAccounts: []}\n"))
                == "config.yaml:6: 'serviceAccounts' must not be empty")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc: {audience: a, serviceAccounts: [x, '']}\n"))
                == "config.yaml:6: 'serviceAccounts[1]' must not be empty")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc:\n")) == "config.yaml:6: missing required key 'audience' in routes[0].auth.oidc")
    }

    @Test func oidcOverrides() throws {
        let yaml = oneRoute(
            kind: "pubsub",
            """
                auth:
                  oidc:
                    audience: aud
                    serviceAccounts: [a@x, b@x]
                    issuers: [https://issuer.test]
                    jwksURL: http://127.0.0.1:9999/jwks

            """)
        let oidc = try #require(try parse(yaml).routes[0].auth?.oidc)
        #expect(
            oidc
                == OIDCSettings(
                    audience: "aud", serviceAccounts: ["a@x", "b@x"],
                    issuers: ["https://issuer.test"], jwksURL: "http://127.0.0.1:9999/jwks"))
    }

    @Test func entraAudienceAsString() throws {
        let yaml = oneRoute(
            kind: "eventgrid", "    auth:\n      entra: { tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, audience: api://persistor }\n")
        let entra = try #require(try parse(yaml).routes[0].auth?.entra)
        #expect(entra.tenant == "72f988bf-86f1-41af-91ab-2d7cd011db47")
        #expect(entra.audiences == ["api://persistor"])
        #expect(entra.appId == "4962773b-9cdb-44cf-a8bf-237846a00ab7")
        #expect(
            entra.issuers == [
                "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
                "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            ])
        #expect(entra.jwksURL == "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys")
        #expect(entra.role == nil)
    }

    @Test func entraAudienceAsListAndOverrides() throws {
        let yaml = oneRoute(
            kind: "eventgrid",
            """
                auth:
                  entra:
                    tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47
                    audience:
                      - api://persistor
                      - 0b9c4a5e-1111-2222-3333-444455556666
                    appId: 11111111-2222-3333-4444-555555555555
                    role: AzureEventGridSecureWebhookSubscriber
                    issuers: ["https://issuer.test/{tenant}/"]
                    jwksURL: http://127.0.0.1:1/{tenant}/keys

            """)
        let entra = try #require(try parse(yaml).routes[0].auth?.entra)
        #expect(
            entra
                == EntraSettings(
                    tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47",
                    audiences: ["api://persistor", "0b9c4a5e-1111-2222-3333-444455556666"],
                    appId: "11111111-2222-3333-4444-555555555555",
                    issuers: ["https://issuer.test/72f988bf-86f1-41af-91ab-2d7cd011db47/"],
                    role: "AzureEventGridSecureWebhookSubscriber",
                    jwksURL: "http://127.0.0.1:1/72f988bf-86f1-41af-91ab-2d7cd011db47/keys"))
    }

    @Test func entraErrors() {
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { audience: x }\n"))
                == "config.yaml:6: missing required key 'tenant' in routes[0].auth.entra")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47 }\n"))
                == "config.yaml:6: missing required key 'audience' in routes[0].auth.entra")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, audience: {a: b} }\n"))
                == "config.yaml:6: 'audience' must be a string or a list of strings, got a mapping")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { tenant: 72f988bf-86f1-41af-91ab-2d7cd011db47, audience: [] }\n"))
                == "config.yaml:6: 'audience' must not be empty")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { tenant: \"a/b\", audience: x }\n"))
                == "config.yaml:6: invalid tenant 'a/b': use the directory (tenant) id, a GUID")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      entra: { tenant: contoso.onmicrosoft.com, audience: x }\n"))
                == "config.yaml:6: invalid tenant 'contoso.onmicrosoft.com': use the directory (tenant) id, a GUID")
    }

    @Test func jwksURLMustBeHTTPSOrLoopback() {
        #expect(
            failure(
                oneRoute(kind: "pubsub", "    auth:\n      oidc: { audience: a, serviceAccounts: [s], jwksURL: \"http://keys.example.com/jwks\" }\n"))
                == "config.yaml:6: 'jwksURL' must use https (http only for loopback hosts), got 'http://keys.example.com/jwks'")
        #expect(
            failure(oneRoute(kind: "pubsub", "    auth:\n      oidc: { audience: a, serviceAccounts: [s], jwksURL: \"not a url\" }\n"))
                == "config.yaml:6: 'jwksURL' must be a URL, got 'not a url'")
    }

    @Test func clockSkew() throws {
        let yaml = oneRoute(kind: "pubsub", "    auth:\n      clockSkew: 5s\n      querySecret: { param: t, values: [x] }\n")
        #expect(try parse(yaml).routes[0].auth?.clockSkew == .seconds(5))
        #expect(
            try parse(oneRoute(kind: "pubsub", "    auth:\n      querySecret: { param: t, values: [x] }\n")).routes[0].auth?.clockSkew == .seconds(60)
        )
        #expect(failure(oneRoute(kind: "pubsub", "    auth:\n      clockSkew: 5s\n"))?.contains("must name at least one method") == true)
    }

    @Test func secrets() throws {
        let yaml = oneRoute(
            kind: "eventgrid",
            """
                auth:
                  querySecret: { param: code, values: [new, old] }
                  headerSecret:
                    header: X-Persistor-Key
                    values: ["${K}"]

            """)
        let auth = try #require(try parse(yaml, env: ["K": "k1"]).routes[0].auth)
        #expect(
            auth
                == AuthSettings(
                    querySecret: SecretSettings(name: "code", values: ["new", "old"]),
                    headerSecret: SecretSettings(name: "X-Persistor-Key", values: ["k1"])))
    }

    @Test func secretErrors() {
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      querySecret: { param: code }\n"))
                == "config.yaml:6: missing required key 'values' in routes[0].auth.querySecret")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      querySecret: { values: [a] }\n"))
                == "config.yaml:6: missing required key 'param' in routes[0].auth.querySecret")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      querySecret: { param: code, values: [] }\n"))
                == "config.yaml:6: 'values' must not be empty")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      querySecret: { param: code, values: secret }\n"))
                == "config.yaml:6: 'values' must be a list of strings, got a string")
        #expect(
            failure(
                oneRoute(
                    kind: "eventgrid", "    auth:\n      headerSecret:\n        header: X-Key\n        values:\n          - a\n          - \"\"\n"))
                == "config.yaml:10: 'values[1]' must not be empty")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      headerSecret: { header: \"X Key\", values: [a] }\n"))
                == "config.yaml:6: 'header' must be an HTTP header name, got 'X Key'")
        #expect(
            failure(oneRoute(kind: "eventgrid", "    auth:\n      headerSecret: { param: code, values: [a] }\n"))
                == "config.yaml:6: unknown key 'param' in routes[0].auth.headerSecret")
    }
}

// MARK: Files

@Suite("Config: files")
struct ConfigLoadTests {
    @Test func missingFileNamesThePath() {
        let path = "/nonexistent-dir/persistor-\(UUID().uuidString).yaml"
        #expect(throws: ConfigError("cannot read config file '\(path)': No such file or directory")) {
            try ConfigLoader.load(file: path, environment: [:])
        }
    }

    @Test func directoryIsNotAFile() {
        let dir = FileManager.default.temporaryDirectory.path
        #expect(throws: ConfigError("cannot read config file '\(dir)': Is a directory")) {
            try ConfigLoader.load(file: dir, environment: [:])
        }
    }

    @Test func loadsAFileAndUsesItsPathInErrors() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("persistor-config-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: url) }

        try Data("\u{FEFF}store: ${STORE}\nserver:\n  port: 9000\n".utf8).write(to: url)
        let config = try ConfigLoader.load(file: url.path, environment: ["STORE": "file:///var/data"])
        #expect(config.store == "file:///var/data")
        #expect(config.server.port == 9000)

        try Data("server:\n  port: 9000\n  prot: 1\n".utf8).write(to: url)
        #expect(throws: ConfigError("\(url.path):3: unknown key 'prot' in server")) {
            try ConfigLoader.load(file: url.path, environment: [:])
        }

        try Data([0x73, 0x74, 0x6F, 0x72, 0x65, 0x3A, 0x20, 0xFF, 0x0A]).write(to: url)
        #expect(throws: ConfigError("cannot read config file '\(url.path)': not valid UTF-8")) {
            try ConfigLoader.load(file: url.path, environment: [:])
        }
    }
}

import Crypto
import CryptoExtras
import Foundation
import Logging
import PersistorCore
import PersistorHTTP
import PersistorTestSupport
import Synchronization

@testable import PersistorAuth

// MARK: - Keys and tokens

typealias TestKey = _RSA.Signing.PrivateKey

/// RSA keys generated once per test process (2048-bit generation takes a moment).
enum TestKeys {
    static let a = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    static let b = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    static let c = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
}

func base64url(_ bytes: some Sequence<UInt8>) -> String { Base64URL.encode(bytes) }

/// A deterministic JSON encoder for test fixtures (sorted keys; `Bool` stays `true`/`false`).
func json(_ value: Any) -> String {
    if type(of: value) == Bool.self, let bool = value as? Bool { return bool ? "true" : "false" }
    switch value {
    case let int as Int: return String(int)
    case let double as Double: return String(double)
    case let string as String: return jsonStringLiteral(string)
    case let array as [Any]: return "[" + array.map(json).joined(separator: ",") + "]"
    case let object as [String: Any]:
        return "{" + object.keys.sorted().map { json($0) + ":" + json(object[$0]!) }.joined(separator: ",") + "}"
    case is NSNull: return "null"
    default: fatalError("json: unsupported \(type(of: value))")
    }
}

/// Signs `header.payload` (given as raw JSON text) with RS256 (PKCS#1 v1.5, not PSS).
func signRS256(headerJSON: String, payloadJSON: String, key: _RSA.Signing.PrivateKey) -> String {
    let input = base64url(headerJSON.utf8) + "." + base64url(payloadJSON.utf8)
    let signature = try! key.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5)
    return input + "." + base64url(signature.rawRepresentation)
}

func mint(
    _ claims: [String: Any], key: _RSA.Signing.PrivateKey = TestKeys.a, kid: String = "a1",
    header: [String: Any?] = [:]
) -> String {
    var fullHeader: [String: Any] = ["alg": "RS256", "kid": kid, "typ": "JWT"]
    for (name, value) in header { fullHeader[name] = value }
    return signRS256(headerJSON: json(fullHeader), payloadJSON: json(claims), key: key)
}

/// `base` with `changes` applied; a `nil` value removes the claim.
func with(_ base: [String: Any], _ changes: [String: Any?]) -> [String: Any] {
    var result = base
    for (name, value) in changes { result[name] = value }
    return result
}

func nowSeconds() -> Int { Int(Date().timeIntervalSince1970) }

enum Google {
    static let audience = "https://persistor.example.com/pubsub/orders"
    static let serviceAccount = "pusher@my-project.iam.gserviceaccount.com"

    static func claims(now: Int = nowSeconds()) -> [String: Any] {
        [
            "aud": audience, "azp": "113774264463038321964", "email": serviceAccount, "email_verified": true,
            "exp": now + 3600, "iat": now, "iss": "https://accounts.google.com", "sub": "113774264463038321964",
        ]
    }
}

enum Entra {
    static let tenant = "1912158f-712f-400e-819d-8498b1ad6f85"
    static let otherTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    static let audience = "4d57fb6b-75ff-4e75-b2f1-b7788685f383"
    static let eventGrid = "4962773b-9cdb-44cf-a8bf-237846a00ab7"
    static let role = "AzureEventGridSecureWebhookSubscriber"

    static func v1(now: Int = nowSeconds(), tenant: String = Entra.tenant) -> [String: Any] {
        [
            "aud": audience, "iss": "https://sts.windows.net/\(tenant)/", "iat": now, "nbf": now, "exp": now + 86_700,
            "appid": eventGrid, "appidacr": "2", "idp": "https://sts.windows.net/\(tenant)/",
            "oid": "df247a9a-f64f-431a-873f-ffb36338b683", "sub": "df247a9a-f64f-431a-873f-ffb36338b683",
            "tid": tenant, "ver": "1.0", "roles": [role],
        ]
    }

    static func v2(now: Int = nowSeconds(), tenant: String = Entra.tenant) -> [String: Any] {
        [
            "aud": audience, "iss": "https://login.microsoftonline.com/\(tenant)/v2.0", "iat": now, "nbf": now,
            "exp": now + 3600, "azp": eventGrid, "azpacr": "2", "oid": "df247a9a-f64f-431a-873f-ffb36338b683",
            "sub": "df247a9a-f64f-431a-873f-ffb36338b683", "tid": tenant, "ver": "2.0", "roles": [role],
        ]
    }
}

func jwk(_ key: _RSA.Signing.PrivateKey, kid: String, alg: String? = "RS256", use: String? = "sig") -> [String: Any] {
    let primitives = try! key.publicKey.getKeyPrimitives()
    var entry: [String: Any] = [
        "kty": "RSA", "kid": kid, "n": base64url(primitives.modulus),
        "e": base64url(primitives.publicExponent),
    ]
    if let alg { entry["alg"] = alg }
    if let use { entry["use"] = use }
    return entry
}

func jwks(_ keys: [(key: _RSA.Signing.PrivateKey, kid: String)]) -> String {
    json(["keys": keys.map { jwk($0.key, kid: $0.kid) }])
}

// MARK: - A JWKS endpoint on our own HTTP server

/// Serves `/certs` over real sockets on 127.0.0.1 with a mutable body, Cache-Control, failure
/// switch, response delay and a fetch counter.
final class JWKSServer: Sendable {
    struct Behaviour: Sendable {
        var body: String
        var cacheControl: String?
        var failing = false
        var delay: Duration = .zero
    }

    private final class Shared: Sendable {
        let behaviour: Mutex<Behaviour>
        let fetches = Atomic<Int>(0)
        init(_ behaviour: Behaviour) { self.behaviour = Mutex(behaviour) }
    }

    private let shared: Shared
    private let server: HTTPServer
    let port: Int
    /// A path unique to this server, so a test whose server has stopped can never be answered by
    /// another test's server that reused the port.
    private let path: String

    init(body: String, cacheControl: String? = "public, max-age=3600") throws {
        let shared = Shared(Behaviour(body: body, cacheControl: cacheControl))
        let path = "/certs-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        self.path = path
        var router = Router()
        router.add(
            path,
            Router.Route(methods: ["GET"]) { _, respond in
                shared.fetches.add(1, ordering: .relaxed)
                let behaviour = shared.behaviour.withLock { $0 }
                var headers = HTTPHeaders()
                let response: HTTPResponse
                if behaviour.failing {
                    response = .text(503, "unavailable")
                } else {
                    headers.add("Content-Type", "application/json")
                    if let cacheControl = behaviour.cacheControl { headers.add("Cache-Control", cacheControl) }
                    response = HTTPResponse(status: 200, headers: headers, body: Array(behaviour.body.utf8))
                }
                if behaviour.delay > .zero {
                    let nanoseconds = behaviour.delay.components.seconds * 1_000_000_000 + behaviour.delay.components.attoseconds / 1_000_000_000
                    DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanoseconds))) { @Sendable in
                        respond(response)
                    }
                } else {
                    respond(response)
                }
            })
        self.shared = shared
        self.server = HTTPServer(settings: HTTPServerSettings(host: "127.0.0.1", port: 0, loops: 1), service: router)
        self.port = try server.start()
    }

    convenience init(
        keys: [(key: _RSA.Signing.PrivateKey, kid: String)] = [(TestKeys.a, "a1")],
        cacheControl: String? = "public, max-age=3600"
    ) throws {
        try self.init(body: jwks(keys), cacheControl: cacheControl)
    }

    /// Production JWKS URLs are https; the fetcher allows plain http for loopback hosts only.
    var url: String { "http://127.0.0.1:\(port)\(path)" }

    /// Requests served so far.
    var fetches: Int { shared.fetches.load(ordering: .relaxed) }

    func setKeys(_ keys: [(key: _RSA.Signing.PrivateKey, kid: String)]) {
        shared.behaviour.withLock { $0.body = jwks(keys) }
    }

    func setBody(_ body: String) { shared.behaviour.withLock { $0.body = body } }
    func setCacheControl(_ value: String?) { shared.behaviour.withLock { $0.cacheControl = value } }
    func setFailing(_ failing: Bool) { shared.behaviour.withLock { $0.failing = failing } }
    func setDelay(_ delay: Duration) { shared.behaviour.withLock { $0.delay = delay } }

    /// Closes the listener and every connection.
    func stop() async {
        server.stopAccepting()
        server.drainConnections()
        _ = await server.waitForConnections(until: .now + .seconds(3))
    }
}

// MARK: - Logs

/// Collects every log line (message and metadata) so tests can check what was (not) logged.
final class LogCapture: Sendable {
    private let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }
    var text: String { all.joined(separator: "\n") }

    func append(_ line: String) { lines.withLock { $0.append(line) } }

    var logger: Logger {
        Logger(label: "auth-test") { _ in CapturingHandler(capture: self) }
    }

    struct CapturingHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            let rendered = merged.keys.sorted().map { "\($0)=\(merged[$0]!)" }.joined(separator: " ")
            capture.append("\(event.level) \(event.message) \(rendered)")
        }
    }
}

// MARK: - Harness

/// One JWKS server, one registry and a log capture: a fresh world per test.
struct Harness {
    let server: JWKSServer
    let registry: JWKSRegistry
    let logs = LogCapture()

    init(
        keys: [(key: _RSA.Signing.PrivateKey, kid: String)] = [(TestKeys.a, "a1")],
        cacheControl: String? = "public, max-age=3600",
        minimumRefreshInterval: Duration = .seconds(60),
        failureBackoff: Duration = .seconds(5)
    ) throws {
        server = try JWKSServer(keys: keys, cacheControl: cacheControl)
        registry = JWKSRegistry(
            fetcher: URLSessionJWKSFetcher(timeout: .seconds(5)),
            minimumRefreshInterval: minimumRefreshInterval,
            failureBackoff: failureBackoff, logger: logs.logger)
    }

    func oidc(audience: String = Google.audience, serviceAccounts: [String] = [Google.serviceAccount]) -> OIDCSettings {
        OIDCSettings(audience: audience, serviceAccounts: serviceAccounts, jwksURL: server.url)
    }

    func entra(role: String? = nil, audiences: [String] = [Entra.audience]) -> EntraSettings {
        EntraSettings(tenant: Entra.tenant, audiences: audiences, role: role, jwksURL: server.url)
    }

    func authenticator(_ settings: AuthSettings, route: String = "orders") -> RouteAuthenticator {
        RouteAuthenticator(route: route, settings: settings, keys: registry, logger: logs.logger)
    }

    func oidcAuthenticator(clockSkew: Duration = .seconds(60)) -> RouteAuthenticator {
        authenticator(AuthSettings(oidc: oidc(), clockSkew: clockSkew))
    }

    func entraAuthenticator(role: String? = nil) -> RouteAuthenticator {
        authenticator(AuthSettings(entra: entra(role: role)))
    }

    func stop() async { await server.stop() }
}

// MARK: - Requests

func request(bearer: String? = nil, target: String = "/pubsub/orders", headers: [(String, String)] = []) -> HTTPRequestHead {
    var fields = HTTPHeaders()
    fields.add("Host", "persistor.example.com")
    if let bearer { fields.add("Authorization", "Bearer \(bearer)") }
    for (name, value) in headers { fields.add(name, value) }
    return HTTPRequestHead(method: "POST", target: target, versionMinor: 1, headers: fields)
}

/// Runs `authenticate` and waits for its (possibly asynchronous) answer.
func decide(_ authenticator: RouteAuthenticator, _ head: HTTPRequestHead) async -> AuthDecision {
    await withCheckedContinuation { continuation in
        authenticator.authenticate(head) { continuation.resume(returning: $0) }
    }
}

/// Runs `authenticate` and returns the answer only if `completion` ran before `authenticate`
/// returned (the synchronous fast path); `nil` otherwise.
func decideSynchronously(_ authenticator: RouteAuthenticator, _ head: HTTPRequestHead) -> AuthDecision? {
    let box = LockedBox<AuthDecision?>(nil)
    authenticator.authenticate(head) { decision in box.set(decision) }
    return box.get()
}

let invalidToken = #"Bearer error="invalid_token""#

func denied(_ status: Int, _ reason: String, _ challenge: String? = invalidToken) -> AuthDecision {
    .denied(status: status, reason: reason, wwwAuthenticate: status == 401 ? challenge : nil)
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(20), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

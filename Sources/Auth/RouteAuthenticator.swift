import Crypto
import Foundation
import Logging
import PersistorCore
import PersistorHTTP
import Synchronization

/// Decides whether one route's requests are admitted.
///
/// Methods are tried cheapest first: the secrets (synchronous), then the token methods (oidc, entra)
/// with one shared bearer token. The first method that passes admits the request. When all refuse,
/// the answer is 503 if keys were unavailable (the sender retries), else 403 if a correctly signed
/// token named the wrong principal, else 401; among equals, the most specific reason wins (a
/// presented-but-wrong credential over an absent one).
///
/// Bearer tokens come from `Authorization: Bearer …` (exactly one header) or the `access_token` query
/// parameter (the CloudEvents webhook spec requires both), never from both at once.
package final class RouteAuthenticator: Sendable {
    package let route: String
    private let settings: AuthSettings
    private let logger: Logger
    private let secrets: [SecretMatcher]
    private let policies: [TokenPolicy]
    /// Names the token methods together, for failures before any single one applies.
    private let tokenMethods: String
    private let counts = Mutex<[String: Int]>([:])
    private let verified: VerifiedTokenCache

    package init(route: String, settings: AuthSettings, keys: JWKSRegistry, logger: Logger) {
        self.route = route
        self.settings = settings
        self.logger = logger
        var secrets: [SecretMatcher] = []
        if let query = settings.querySecret { secrets.append(SecretMatcher(place: .query, settings: query)) }
        if let header = settings.headerSecret { secrets.append(SecretMatcher(place: .header, settings: header)) }
        self.secrets = secrets
        let skew = settings.clockSkew.timeInterval
        var policies: [TokenPolicy] = []
        if let oidc = settings.oidc {
            policies.append(TokenPolicy(kind: .oidc(oidc), keys: keys.cache(for: oidc.jwksURL), skew: skew))
        }
        if let entra = settings.entra {
            policies.append(TokenPolicy(kind: .entra(entra), keys: keys.cache(for: entra.jwksURL), skew: skew))
        }
        self.policies = policies
        self.tokenMethods = policies.map(\.name).joined(separator: "+")
        self.verified = VerifiedTokenCache(capacity: settings.verifiedTokenCacheSize)
    }

    /// Failure counts by reason since start, e.g. `["expired": 2, "aud mismatch": 1]`; the tests read
    /// them, and they are what an auth-rejections metric will export.
    package var failureCounts: [String: Int] { counts.withLock { $0 } }

    /// Entries in the verified-token cache (tests and diagnostics).
    var verifiedTokenCount: Int { verified.count }

    /// Starts fetching the signing keys of this route's token methods, so the first request does
    /// not wait for them.
    package func prefetchKeys() {
        for policy in policies { policy.keys.prefetch() }
    }

    /// Decides for one request. Calls `completion` exactly once — synchronously when no network
    /// is needed (secrets; tokens whose keys are cached; a verified-token cache hit), otherwise
    /// after fetching keys, on a Swift concurrency thread (hop back to your own queue there).
    /// Never logs secrets or tokens.
    package func authenticate(_ head: HTTPRequestHead, completion: @escaping @Sendable (AuthDecision) -> Void) {
        var secretFailures: [AuthFailure] = []
        for matcher in secrets {
            guard let failure = matcher.check(head) else {
                completion(.allowed(method: matcher.method))
                return
            }
            secretFailures.append(failure)
        }
        guard !policies.isEmpty else {
            completion(decide(secretFailures, tokenPresented: false))
            return
        }
        func refuse(_ failure: AuthFailure, presented: Bool = true) {
            completion(decide([failure] + secretFailures, tokenPresented: presented))
        }

        let token: String
        switch extractToken(head) {
        case .failure(let failure):
            refuse(failure, presented: failure.specificity == 2)
            return
        case .success(let value):
            token = value
        }
        guard token.utf8.count <= settings.maxTokenBytes else {
            refuse(.unauthorized("token too large", tokenMethods))
            return
        }
        let now = Self.now()
        let digest = SHA256.hash(data: Array(token.utf8))
        if let method = verified.method(for: digest, now: now) {
            completion(.allowed(method: method))
            return
        }
        let parsed: ParsedToken
        switch ParsedToken.parse(token) {
        case .failure(let problem):
            refuse(.unauthorized(problem.reason, tokenMethods))
            return
        case .success(let value):
            parsed = value
        }
        if let reason = checkJOSEHeader(parsed, allowedAlgorithms: settings.allowedAlgorithms) {
            refuse(.unauthorized(reason, tokenMethods))
            return
        }
        verify(
            parsed, with: 0, digest: digest, now: now, failures: [], secretFailures: secretFailures,
            completion: completion)
    }

    /// Tries the token methods from `index` on, one after the other (each may wait for keys).
    private func verify(
        _ token: ParsedToken, with index: Int, digest: SHA256Digest, now: Double,
        failures: [AuthFailure], secretFailures: [AuthFailure],
        completion: @escaping @Sendable (AuthDecision) -> Void
    ) {
        guard index < policies.count else {
            completion(decide(failures + secretFailures, tokenPresented: true))
            return
        }
        let policy = policies[index]
        policy.verify(token, now: now) { [self] result in
            switch result {
            case .success(let exp):
                verified.insert(digest, expiry: exp + policy.skew, method: policy.name, now: now)
                completion(.allowed(method: policy.name))
            case .failure(let failure):
                verify(
                    token, with: index + 1, digest: digest, now: now, failures: failures + [failure],
                    secretFailures: secretFailures, completion: completion)
            }
        }
    }

    /// The bearer token of a request, or why there is none usable.
    private func extractToken(_ head: HTTPRequestHead) -> Result<String, AuthFailure> {
        let authorization = head.headers.values(for: "authorization")
        let queryTokens = QueryString.values(named: "access_token", in: head.query)
        guard authorization.count <= 1 else { return .failure(.unauthorized("multiple Authorization headers", tokenMethods)) }
        guard queryTokens.count <= 1 else { return .failure(.unauthorized("multiple access_token parameters", tokenMethods)) }
        var otherScheme = false
        if let value = authorization.first {
            if let token = Self.bearerToken(value) {
                guard queryTokens.isEmpty else { return .failure(.unauthorized("token in header and query", tokenMethods)) }
                guard !token.isEmpty else { return .failure(.unauthorized("malformed token: empty", tokenMethods)) }
                return .success(token)
            }
            otherScheme = true
        }
        if let raw = queryTokens.first {
            guard let bytes = try? PercentDecoding.decode(raw.utf8), let token = String(validating: bytes, as: UTF8.self) else {
                return .failure(.unauthorized("malformed token: bad percent-encoding", tokenMethods))
            }
            guard !token.isEmpty else { return .failure(.unauthorized("malformed token: empty", tokenMethods)) }
            return .success(token)
        }
        if otherScheme { return .failure(.unauthorized("not a Bearer token", tokenMethods, specificity: 1)) }
        return .failure(.unauthorized("missing token", tokenMethods, specificity: 0))
    }

    /// The credentials of `Bearer <token>` (scheme case-insensitive), or `nil` for another scheme.
    static func bearerToken(_ value: String) -> String? {
        let trimmed = value.trimmingASCIIWhitespace()
        guard trimmed.utf8.count >= 6, trimmed.prefix(6).caseInsensitiveEquals("bearer") else { return nil }
        let rest = trimmed.dropFirst(6)
        if rest.isEmpty { return "" }
        guard rest.first == " " || rest.first == "\t" else { return nil }
        return String(rest.trimmingASCIIWhitespace())
    }

    /// Picks the winning failure, counts and logs it, and renders the decision.
    private func decide(_ failures: [AuthFailure], tokenPresented: Bool) -> AuthDecision {
        var best = failures.first ?? .unauthorized("no auth method configured", "none", specificity: 0)
        for failure in failures.dropFirst() where failure.outranks(best) { best = failure }
        counts.withLock { $0[best.reason, default: 0] += 1 }
        logger.warning(
            "auth failed",
            metadata: [
                "route": .string(route), "reason": .string(best.reason), "method": .string(best.method),
                "status": .stringConvertible(best.status),
            ])
        guard best.status == 401 else {
            return .denied(status: best.status, reason: best.reason, wwwAuthenticate: nil)
        }
        let challenge: String
        if policies.isEmpty {
            challenge = "Secret"  // no standard scheme names a shared secret; RFC 9110 wants a challenge
        } else {
            challenge = tokenPresented ? #"Bearer error="invalid_token""# : "Bearer"
        }
        return .denied(status: 401, reason: best.reason, wwwAuthenticate: challenge)
    }

    static func now() -> Double {
        Date().timeIntervalSince1970
    }
}

/// Tokens that already passed a method, keyed by SHA-256 of the raw token (per route, since each
/// `RouteAuthenticator` owns one). Pub/Sub reuses one token for many pushes; a hit skips parsing and
/// the RSA verify. An entry lives until the token's `exp` + skew. When full, expired entries are
/// dropped, and if that frees nothing, the whole cache is cleared (bounded memory, simple).
final class VerifiedTokenCache: Sendable {
    private struct Entry {
        var expiry: Double
        var method: String
    }

    private let entries = Mutex<[SHA256Digest: Entry]>([:])
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = max(0, capacity)
    }

    func method(for digest: SHA256Digest, now: Double) -> String? {
        entries.withLock { entries in
            guard let entry = entries[digest] else { return nil }
            guard now < entry.expiry else {
                entries[digest] = nil
                return nil
            }
            return entry.method
        }
    }

    func insert(_ digest: SHA256Digest, expiry: Double, method: String, now: Double) {
        guard capacity > 0 else { return }
        entries.withLock { entries in
            if entries.count >= capacity, entries[digest] == nil {
                entries = entries.filter { $0.value.expiry > now }
                if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
            }
            entries[digest] = Entry(expiry: expiry, method: method)
        }
    }

    var count: Int { entries.withLock { $0.count } }
}

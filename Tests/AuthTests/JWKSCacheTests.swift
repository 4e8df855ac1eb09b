import Foundation
import PersistorHTTP
import PersistorTestSupport
import Testing

@testable import PersistorAuth

@Suite("JWKS cache")
struct JWKSCacheTests {
    /// A fresh token each time (distinct `sub`), so the verified-token cache never answers.
    private func token(_ key: TestKey = TestKeys.a, kid: String = "a1", sub: String = UUID().uuidString) -> String {
        mint(with(Google.claims(), ["sub": sub]), key: key, kid: kid)
    }

    @Test func rotationWithoutAFailedValidRequest() async throws {
        let harness = try Harness(cacheControl: "max-age=2")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 1)

        // The provider publishes the next key; tokens signed with it appear at once.
        harness.server.setKeys([(TestKeys.a, "a1"), (TestKeys.b, "b1")])
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2, "an unknown kid triggers one refresh")
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))

        // The old key disappears; after max-age the set is refetched.
        harness.server.setKeys([(TestKeys.b, "b1")])
        try await Task.sleep(for: .milliseconds(2300))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == .allowed(method: "oidc"))
        #expect(harness.server.fetches >= 3)
        #expect(await decide(authenticator, request(bearer: token())) == denied(401, "unknown kid"))
        await harness.stop()
    }

    @Test func immediateSwitchToANewKey() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        harness.server.setKeys([(TestKeys.b, "b1")])
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func unknownKidRefreshIsRateLimited() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "x1"))) == denied(401, "unknown kid"))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "x2"))) == denied(401, "unknown kid"))
        #expect(harness.server.fetches == 2, "initial fetch + one refresh within the interval")
        // The second unknown kid was refused synchronously, without waiting for the network.
        #expect(decideSynchronously(authenticator, request(bearer: token(TestKeys.b, kid: "x3"))) == denied(401, "unknown kid"))
        await harness.stop()
    }

    @Test func unknownKidRefreshAgainAfterTheInterval() async throws {
        // The interval is long enough for the first three decisions even on a loaded machine.
        let harness = try Harness(minimumRefreshInterval: .seconds(5))
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == denied(401, "unknown kid"))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == denied(401, "unknown kid"))
        #expect(harness.server.fetches == 2)
        harness.server.setKeys([(TestKeys.a, "a1"), (TestKeys.b, "b1")])
        try await Task.sleep(for: .milliseconds(5100))
        #expect(await decide(authenticator, request(bearer: token(TestKeys.b, kid: "b1"))) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 3)
        await harness.stop()
    }

    @Test func shortMaxAgeIsRefetchedAfterExpiry() async throws {
        let harness = try Harness(cacheControl: "public, max-age=1, must-revalidate")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        try await Task.sleep(for: .milliseconds(1300))
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2)
        await harness.stop()
    }

    @Test func longMaxAgeIsNotRefetched() async throws {
        let harness = try Harness(cacheControl: "public, max-age=3600")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        try await Task.sleep(for: .milliseconds(1300))
        for _ in 0..<5 {
            #expect(decideSynchronously(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        }
        #expect(harness.server.fetches == 1)
        await harness.stop()
    }

    @Test func backgroundRefreshBeforeExpiry() async throws {
        let harness = try Harness(cacheControl: "max-age=5")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        try await Task.sleep(for: .milliseconds(4300))  // past 80% of max-age, before expiry
        // Answered at once from the current keys, while a refresh starts in the background.
        #expect(decideSynchronously(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(await eventually { harness.server.fetches == 2 })
        await harness.stop()
    }

    @Test func serverFailingWithCachedKeysStillVerifies() async throws {
        let harness = try Harness(cacheControl: "max-age=1")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        harness.server.setFailing(true)
        try await Task.sleep(for: .milliseconds(1200))
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2, "the refetch was attempted")
        // Within the failure backoff: the stale keys answer synchronously, no new fetch.
        #expect(decideSynchronously(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2)
        #expect(harness.logs.text.contains("JWKS fetch failed"))
        await harness.stop()
    }

    @Test func serverStoppedWithCachedKeysStillVerifies() async throws {
        let harness = try Harness(cacheControl: "max-age=1")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        await harness.stop()
        try await Task.sleep(for: .milliseconds(1200))
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
    }

    @Test func serverFailingWithoutKeysIs503() async throws {
        let harness = try Harness()
        harness.server.setFailing(true)
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
        // During the failure backoff the 503 comes at once, without another fetch.
        #expect(
            decideSynchronously(authenticator, request(bearer: token())) == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
        #expect(harness.server.fetches == 1)
        #expect(authenticator.failureCounts == ["keys unavailable": 2])
        await harness.stop()
    }

    @Test func serverStoppedWithoutKeysIs503() async throws {
        let harness = try Harness()
        await harness.stop()
        let decision = await decide(harness.oidcAuthenticator(), request(bearer: token()))
        #expect(decision == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
    }

    @Test func recoversAfterTheFailureBackoff() async throws {
        let harness = try Harness(failureBackoff: .milliseconds(200))
        harness.server.setFailing(true)
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
        harness.server.setFailing(false)
        try await Task.sleep(for: .milliseconds(300))
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2)
        await harness.stop()
    }

    @Test func invalidJWKSKeepsOldKeys() async throws {
        let harness = try Harness(cacheControl: "max-age=1")
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        harness.server.setBody("<html>oops</html>")
        try await Task.sleep(for: .milliseconds(1200))
        #expect(await decide(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 2)
        await harness.stop()
    }

    @Test func invalidJWKSWithoutKeysIs503() async throws {
        let harness = try Harness()
        harness.server.setBody(#"{"keys":[{"kty":"EC","kid":"e1","crv":"P-256","x":"AA","y":"AA"}]}"#)
        #expect(
            await decide(harness.oidcAuthenticator(), request(bearer: token()))
                == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
        await harness.stop()
    }

    @Test func concurrentFirstRequestsShareOneFetch() async throws {
        let harness = try Harness()
        harness.server.setDelay(.milliseconds(300))
        let authenticator = harness.oidcAuthenticator()
        let decisions = await withTaskGroup(of: AuthDecision.self) { group in
            for _ in 0..<20 {
                let head = request(bearer: token())
                group.addTask { await decide(authenticator, head) }
            }
            var all: [AuthDecision] = []
            for await decision in group { all.append(decision) }
            return all
        }
        #expect(decisions.count == 20)
        #expect(decisions.allSatisfy { $0 == .allowed(method: "oidc") })
        #expect(harness.server.fetches == 1)
        await harness.stop()
    }

    @Test func routesShareOneCachePerURL() async throws {
        let harness = try Harness()
        let first = harness.authenticator(AuthSettings(oidc: harness.oidc()), route: "one")
        let second = harness.authenticator(AuthSettings(oidc: harness.oidc()), route: "two")
        #expect(await decide(first, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(decideSynchronously(second, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 1)
        #expect(harness.registry.cache(for: harness.server.url) === harness.registry.cache(for: harness.server.url))
        await harness.stop()
    }

    @Test func prefetchWarmsTheCache() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        authenticator.prefetchKeys()
        #expect(await eventually { harness.registry.cache(for: harness.server.url).hasKeys })
        #expect(decideSynchronously(authenticator, request(bearer: token())) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 1)
        await harness.stop()
    }

    @Test func fetcherRefusesPlainHTTPToOtherHosts() async {
        await #expect(throws: URLSessionJWKSFetcher.FetchError.self) {
            _ = try await URLSessionJWKSFetcher().fetch("http://www.googleapis.com/oauth2/v3/certs")
        }
    }

    @Test func fetcherReportsMaxAge() async throws {
        let harness = try Harness(cacheControl: "public, max-age=19830, must-revalidate, no-transform")
        let (body, maxAge) = try await URLSessionJWKSFetcher().fetch(harness.server.url)
        #expect(maxAge == .seconds(19830))
        #expect(try JWKSet.parse(body).count == 1)
        await harness.stop()
    }

    @Test func cacheControlParsing() {
        #expect(freshnessLifetime(cacheControl: "public, max-age=19830, must-revalidate", age: nil) == .seconds(19830))
        #expect(freshnessLifetime(cacheControl: "Max-Age=\"60\"", age: nil) == .seconds(60))
        #expect(freshnessLifetime(cacheControl: "max-age=600", age: "100") == .seconds(500))
        #expect(freshnessLifetime(cacheControl: "max-age=60", age: "100") == .seconds(0))
        #expect(freshnessLifetime(cacheControl: "no-store", age: nil) == .seconds(0))
        #expect(freshnessLifetime(cacheControl: "public", age: nil) == nil)
        #expect(freshnessLifetime(cacheControl: "max-age=abc", age: nil) == nil)
        #expect(freshnessLifetime(cacheControl: nil, age: "5") == nil)
    }

    @Test func jwkSelectionRules() throws {
        let body = json([
            "keys": [
                jwk(TestKeys.a, kid: "a1"),
                jwk(TestKeys.b, kid: "enc", use: "enc"),
                jwk(TestKeys.b, kid: "noalg", alg: nil, use: nil),
                ["kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"],
                ["kty": "RSA", "kid": "short", "n": base64url([UInt8](repeating: 0xC5, count: 128)), "e": "AQAB"],
                ["kty": "RSA", "n": base64url([UInt8](repeating: 0xC5, count: 256)), "e": "AQAB"],
            ] as [Any]
        ])
        let set = try JWKSet.parse(Array(body.utf8))
        #expect(Set(set.keys.keys) == ["a1", "noalg"])
        #expect(set.skipped == 4)
        #expect(set.keys["a1"]?.first?.alg == "RS256")
        #expect(set.keys["noalg"]?.first?.alg == nil)
    }
}

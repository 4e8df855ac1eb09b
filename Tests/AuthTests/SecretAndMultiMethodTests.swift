import Foundation
import PersistorHTTP
import PersistorTestSupport
import Testing

@testable import PersistorAuth

@Suite("Secrets")
struct SecretTests {
    private let secret = "s3cr3t-Value+with/odd=chars"
    private let rotated = "next-secret"

    private func querySecretRoute(_ harness: Harness) -> RouteAuthenticator {
        harness.authenticator(AuthSettings(querySecret: SecretSettings(name: "code", values: [secret, rotated])), route: "blob-events")
    }

    private func headerSecretRoute(_ harness: Harness) -> RouteAuthenticator {
        harness.authenticator(
            AuthSettings(headerSecret: SecretSettings(name: "X-Persistor-Secret", values: [secret, rotated])),
            route: "blob-events")
    }

    private var encodedSecret: String {
        secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
    }

    @Test func querySecretAccepted() async throws {
        let harness = try Harness()
        let route = querySecretRoute(harness)
        #expect(decideSynchronously(route, request(target: "/eventgrid?code=\(encodedSecret)")) == .allowed(method: "querySecret"))
        #expect(decideSynchronously(route, request(target: "/eventgrid?x=1&code=\(rotated)")) == .allowed(method: "querySecret"))
        await harness.stop()
    }

    @Test func querySecretPlusStaysPlus() async throws {
        let harness = try Harness()
        let route = harness.authenticator(AuthSettings(querySecret: SecretSettings(name: "code", values: ["a+b"])))
        #expect(decideSynchronously(route, request(target: "/e?code=a+b")) == .allowed(method: "querySecret"))
        #expect(decideSynchronously(route, request(target: "/e?code=a%2Bb")) == .allowed(method: "querySecret"))
        #expect(decideSynchronously(route, request(target: "/e?code=a%20b")) == denied(401, "secret mismatch", "Secret"))
        await harness.stop()
    }

    @Test func querySecretWrong() async throws {
        let harness = try Harness()
        let route = querySecretRoute(harness)
        #expect(decideSynchronously(route, request(target: "/eventgrid?code=guess")) == denied(401, "secret mismatch", "Secret"))
        // A prefix of the real secret is still a mismatch.
        #expect(decideSynchronously(route, request(target: "/eventgrid?code=s3cr3t")) == denied(401, "secret mismatch", "Secret"))
        await harness.stop()
    }

    @Test func querySecretMissing() async throws {
        let harness = try Harness()
        #expect(decideSynchronously(querySecretRoute(harness), request(target: "/eventgrid")) == denied(401, "missing secret", "Secret"))
        #expect(
            decideSynchronously(querySecretRoute(harness), request(target: "/eventgrid?codes=\(rotated)")) == denied(401, "missing secret", "Secret"))
        await harness.stop()
    }

    @Test func querySecretSentAsHeader() async throws {
        let harness = try Harness()
        let head = request(target: "/eventgrid", headers: [("code", secret)])
        #expect(decideSynchronously(querySecretRoute(harness), head) == denied(401, "missing secret", "Secret"))
        await harness.stop()
    }

    @Test func querySecretTwice() async throws {
        let harness = try Harness()
        let head = request(target: "/eventgrid?code=\(rotated)&code=\(rotated)")
        #expect(decideSynchronously(querySecretRoute(harness), head) == denied(401, "multiple secrets", "Secret"))
        await harness.stop()
    }

    @Test func querySecretBadPercentEncoding() async throws {
        let harness = try Harness()
        #expect(decideSynchronously(querySecretRoute(harness), request(target: "/eventgrid?code=%zz")) == denied(401, "malformed secret", "Secret"))
        await harness.stop()
    }

    @Test func headerSecretAccepted() async throws {
        let harness = try Harness()
        let route = headerSecretRoute(harness)
        #expect(decideSynchronously(route, request(headers: [("x-persistor-secret", secret)])) == .allowed(method: "headerSecret"))
        #expect(decideSynchronously(route, request(headers: [("X-Persistor-Secret", rotated)])) == .allowed(method: "headerSecret"))
        await harness.stop()
    }

    @Test func headerSecretWrongMissingTwiceOrInQuery() async throws {
        let harness = try Harness()
        let route = headerSecretRoute(harness)
        #expect(decideSynchronously(route, request(headers: [("X-Persistor-Secret", "guess")])) == denied(401, "secret mismatch", "Secret"))
        #expect(decideSynchronously(route, request()) == denied(401, "missing secret", "Secret"))
        #expect(decideSynchronously(route, request(target: "/e?X-Persistor-Secret=\(rotated)")) == denied(401, "missing secret", "Secret"))
        let twice = request(headers: [("X-Persistor-Secret", secret), ("X-Persistor-Secret", secret)])
        #expect(decideSynchronously(route, twice) == denied(401, "multiple secrets", "Secret"))
        await harness.stop()
    }

    @Test func secretsAreNeverLogged() async throws {
        let harness = try Harness()
        let route = querySecretRoute(harness)
        _ = decideSynchronously(route, request(target: "/eventgrid?code=almost-\(secret)&other=visible-param"))
        _ = decideSynchronously(headerSecretRoute(harness), request(headers: [("X-Persistor-Secret", "wrong-\(rotated)")]))
        let text = harness.logs.text
        #expect(text.contains("reason=secret mismatch"))
        #expect(text.contains("route=blob-events"))
        #expect(!text.contains(secret) && !text.contains(encodedSecret) && !text.contains(rotated))
        #expect(!text.contains("visible-param"), "the query string is not logged")
        await harness.stop()
    }

    @Test func constantTimeComparison() {
        let value = Array("secret".utf8)
        #expect(SecretMatcher.constantTimeEquals(value, value) == 1)
        #expect(SecretMatcher.constantTimeEquals(Array("secreT".utf8), value) == 0)
        #expect(SecretMatcher.constantTimeEquals(Array("secre".utf8), value) == 0)
        #expect(SecretMatcher.constantTimeEquals(Array("secrets".utf8), value) == 0)
        #expect(SecretMatcher.constantTimeEquals([], value) == 0)
        #expect(SecretMatcher.constantTimeEquals([], []) == 1)
        #expect(SecretMatcher.matchesAny(value, [Array("a".utf8), value, Array("b".utf8)]))
        #expect(!SecretMatcher.matchesAny(value, []))
    }

    @Test func queryParameterNames() {
        #expect(QueryString.values(named: "code", in: "a=1&code=x&&c%6Fde=y&code") == ["x", "y", ""])
        #expect(QueryString.values(named: "code", in: nil) == [])
    }

    @Test func emptySettingsFailClosed() async throws {
        let harness = try Harness()
        let route = harness.authenticator(AuthSettings())
        #expect(decideSynchronously(route, request()) == denied(401, "no auth method configured", "Secret"))
        await harness.stop()
    }
}

@Suite("Several methods")
struct MultiMethodTests {
    private func route(_ harness: Harness) -> RouteAuthenticator {
        harness.authenticator(AuthSettings(oidc: harness.oidc(), querySecret: SecretSettings(name: "token", values: ["letmein"])))
    }

    @Test func eitherMethodPasses() async throws {
        let harness = try Harness()
        let authenticator = route(harness)
        #expect(await decide(authenticator, request(bearer: mint(Google.claims()))) == .allowed(method: "oidc"))
        #expect(decideSynchronously(authenticator, request(target: "/p?token=letmein")) == .allowed(method: "querySecret"))
        // A right secret admits even with a bad token alongside.
        let expired = mint(with(Google.claims(now: nowSeconds() - 7200), ["exp": nowSeconds() - 600]))
        #expect(decideSynchronously(authenticator, request(bearer: expired, target: "/p?token=letmein")) == .allowed(method: "querySecret"))
        await harness.stop()
    }

    @Test func bothFailIs401() async throws {
        let harness = try Harness()
        let authenticator = route(harness)
        // Nothing at all: the token method's challenge, no error.
        #expect(await decide(authenticator, request()) == denied(401, "missing token", "Bearer"))
        // A wrong secret is more specific than an absent token.
        #expect(await decide(authenticator, request(target: "/p?token=nope")) == denied(401, "secret mismatch", "Bearer"))
        // A bad token is more specific than an absent secret.
        let wrongAud = mint(with(Google.claims(), ["aud": "https://elsewhere.example"]))
        #expect(await decide(authenticator, request(bearer: wrongAud)) == denied(401, "aud mismatch"))
        await harness.stop()
    }

    @Test func wrongPrincipalAndWrongSecretIs403() async throws {
        let harness = try Harness()
        let token = mint(with(Google.claims(), ["email": "intruder@example.com"]))
        #expect(await decide(route(harness), request(bearer: token, target: "/p?token=nope")) == denied(403, "email not allowed"))
        await harness.stop()
    }

    @Test func keysDownAndWrongSecretIs503() async throws {
        let harness = try Harness()
        harness.server.setFailing(true)
        let decision = await decide(route(harness), request(bearer: mint(Google.claims()), target: "/p?token=nope"))
        #expect(decision == .denied(status: 503, reason: "keys unavailable", wwwAuthenticate: nil))
        await harness.stop()
    }

    @Test func oidcAndEntraOnOneRoute() async throws {
        let harness = try Harness()
        let entraKeys = try JWKSServer(keys: [(TestKeys.b, "b1")])
        let entra = EntraSettings(tenant: Entra.tenant, audiences: [Entra.audience], jwksURL: entraKeys.url)
        let authenticator = harness.authenticator(AuthSettings(oidc: harness.oidc(), entra: entra))
        // A Google token is refused by entra on its issuer, before any Entra key fetch.
        #expect(await decide(authenticator, request(bearer: mint(Google.claims()))) == .allowed(method: "oidc"))
        #expect(entraKeys.fetches == 0)
        #expect(await decide(authenticator, request(bearer: mint(Entra.v2(), key: TestKeys.b, kid: "b1"))) == .allowed(method: "entra"))
        #expect(entraKeys.fetches == 1)
        // An Entra token from another tenant: iss mismatch for both methods.
        let foreign = mint(Entra.v1(tenant: Entra.otherTenant), key: TestKeys.b, kid: "b1")
        #expect(await decide(authenticator, request(bearer: foreign)) == denied(401, "iss mismatch"))
        await entraKeys.stop()
        await harness.stop()
    }
}

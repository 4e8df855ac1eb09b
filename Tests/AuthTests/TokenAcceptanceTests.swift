import Crypto
import CryptoExtras
import Foundation
import PersistorCore
import PersistorHTTP
import PersistorTestSupport
import Testing

@testable import PersistorAuth

@Suite("Token acceptance")
struct TokenAcceptanceTests {
    @Test(arguments: ["accounts.google.com", "https://accounts.google.com"])
    func googleIssuerSpellings(issuer: String) async throws {
        let harness = try Harness()
        let token = mint(with(Google.claims(), ["iss": issuer]))
        #expect(await decide(harness.oidcAuthenticator(), request(bearer: token)) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func officialExampleClaimShape() async throws {
        // The example token of https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions,
        // with fresh dates and our audience.
        let harness = try Harness()
        let now = nowSeconds()
        let claims: [String: Any] = [
            "aud": Google.audience, "azp": "113774264463038321964",
            "email": "gae-gcp@appspot.gserviceaccount.com", "email_verified": true,
            "exp": now + 3600, "iat": now, "iss": "https://accounts.google.com",
            "sub": "113774264463038321964",
        ]
        let authenticator = harness.authenticator(AuthSettings(oidc: harness.oidc(serviceAccounts: ["gae-gcp@appspot.gserviceaccount.com"])))
        #expect(await decide(authenticator, request(bearer: mint(claims))) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func serviceAccountComparedCaseInsensitively() async throws {
        let harness = try Harness()
        let authenticator = harness.authenticator(AuthSettings(oidc: harness.oidc(serviceAccounts: [Google.serviceAccount.uppercased()])))
        #expect(await decide(authenticator, request(bearer: mint(Google.claims()))) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func entraV1() async throws {
        let harness = try Harness()
        #expect(await decide(harness.entraAuthenticator(role: Entra.role), request(bearer: mint(Entra.v1()))) == .allowed(method: "entra"))
        await harness.stop()
    }

    @Test func entraV1WithoutRolesWhenNoRoleIsRequired() async throws {
        // A token Event Grid sent to a webhook (a third-party capture, decoded) has no roles claim.
        let harness = try Harness()
        let token = mint(with(Entra.v1(), ["roles": nil]))
        #expect(await decide(harness.entraAuthenticator(), request(bearer: token)) == .allowed(method: "entra"))
        await harness.stop()
    }

    @Test func entraV2() async throws {
        let harness = try Harness()
        #expect(await decide(harness.entraAuthenticator(role: Entra.role), request(bearer: mint(Entra.v2()))) == .allowed(method: "entra"))
        await harness.stop()
    }

    @Test func entraAppIdURIAudience() async throws {
        let harness = try Harness()
        let authenticator = harness.authenticator(AuthSettings(entra: harness.entra(audiences: [Entra.audience, "api://persistor"])))
        let token = mint(with(Entra.v1(), ["aud": "api://persistor"]))
        #expect(await decide(authenticator, request(bearer: token)) == .allowed(method: "entra"))
        await harness.stop()
    }

    @Test func audienceAsArray() async throws {
        let harness = try Harness()
        let token = mint(with(Google.claims(), ["aud": ["https://other.example", Google.audience]]))
        #expect(await decide(harness.oidcAuthenticator(), request(bearer: token)) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func decimalDates() async throws {
        let harness = try Harness()
        let now = Double(nowSeconds())
        let token = mint(with(Google.claims(), ["iat": now + 0.25, "exp": now + 3600.5, "nbf": now - 0.5]))
        #expect(await decide(harness.oidcAuthenticator(), request(bearer: token)) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func clockSkew() async throws {
        let harness = try Harness()
        let now = nowSeconds()
        let token = mint(with(Google.claims(now: now - 3600), ["exp": now - 30]))
        #expect(await decide(harness.oidcAuthenticator(clockSkew: .seconds(60)), request(bearer: token)) == .allowed(method: "oidc"))
        #expect(await decide(harness.oidcAuthenticator(clockSkew: .seconds(10)), request(bearer: token)) == denied(401, "expired"))
        await harness.stop()
    }

    @Test func nbfWithinSkew() async throws {
        let harness = try Harness()
        // Wide margins: the test may be slow on a loaded machine.
        let token = mint(with(Google.claims(), ["nbf": nowSeconds() + 300]))
        #expect(await decide(harness.oidcAuthenticator(clockSkew: .seconds(900)), request(bearer: token)) == .allowed(method: "oidc"))
        #expect(await decide(harness.oidcAuthenticator(clockSkew: .seconds(10)), request(bearer: token)) == denied(401, "not yet valid"))
        await harness.stop()
    }

    @Test func tokenInAccessTokenQueryParameter() async throws {
        let harness = try Harness()
        let head = request(target: "/eventgrid?foo=1&access_token=\(mint(Google.claims()))&bar=2")
        #expect(await decide(harness.oidcAuthenticator(), head) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func bearerSchemeIsCaseInsensitive() async throws {
        let harness = try Harness()
        let head = request(headers: [("authorization", "bearer  \(mint(Google.claims()))")])
        #expect(await decide(harness.oidcAuthenticator(), head) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func typAtJwtAndMissingTypAccepted() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: mint(Google.claims(), header: ["typ": "at+jwt"]))) == .allowed(method: "oidc"))
        #expect(await decide(authenticator, request(bearer: mint(Google.claims(), header: ["typ": nil]))) == .allowed(method: "oidc"))
        await harness.stop()
    }

    @Test func synchronousFastPathWithCachedKeys() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        // First request: keys must be fetched, so the answer comes later.
        #expect(decideSynchronously(authenticator, request(bearer: mint(Google.claims()))) == nil)
        #expect(await eventually { harness.registry.cache(for: harness.server.url).hasKeys })
        // Now the keys are cached: a different token (no verified-token cache hit) is decided
        // before authenticate returns.
        let other = mint(with(Google.claims(), ["sub": "another"]))
        #expect(decideSynchronously(authenticator, request(bearer: other)) == .allowed(method: "oidc"))
        // Refusals are synchronous too.
        #expect(decideSynchronously(authenticator, request()) == denied(401, "missing token", "Bearer"))
        await harness.stop()
    }

    @Test func verifiedTokenCacheSkipsVerification() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        let token = mint(Google.claims())
        #expect(await decide(authenticator, request(bearer: token)) == .allowed(method: "oidc"))
        #expect(authenticator.verifiedTokenCount == 1)
        // Same token again: a hit (still 1 entry), answered synchronously.
        #expect(decideSynchronously(authenticator, request(bearer: token)) == .allowed(method: "oidc"))
        #expect(authenticator.verifiedTokenCount == 1)
        // Refused tokens are never cached.
        _ = await decide(authenticator, request(bearer: mint(with(Google.claims(), ["aud": "x"]))))
        #expect(authenticator.verifiedTokenCount == 1)
        await harness.stop()
    }

    @Test func verifiedTokenCacheIsPerRoute() async throws {
        let harness = try Harness()
        let orders = harness.authenticator(AuthSettings(oidc: harness.oidc()), route: "orders")
        let other = harness.authenticator(AuthSettings(oidc: harness.oidc(audience: "https://other.example")), route: "other")
        let token = mint(Google.claims())
        #expect(await decide(orders, request(bearer: token)) == .allowed(method: "oidc"))
        #expect(await decide(other, request(bearer: token)) == denied(401, "aud mismatch"))
        await harness.stop()
    }

    @Test func verifiedTokenCacheEntryEndsAtExpiry() {
        let cache = VerifiedTokenCache(capacity: 2)
        let digest = SHA256.hash(data: Array("t1".utf8))
        cache.insert(digest, expiry: 100, method: "oidc", now: 50)
        #expect(cache.method(for: digest, now: 99) == "oidc")
        #expect(cache.method(for: digest, now: 100) == nil)
        // Bounded: a full cache drops expired entries, or everything, before inserting.
        for index in 0..<5 {
            cache.insert(SHA256.hash(data: Array("x\(index)".utf8)), expiry: 1000, method: "oidc", now: 60)
            #expect(cache.count <= 2)
        }
    }

    /// Interop: a token signed by OpenSSL (independent of swift-crypto) verifies, and our test
    /// signer's output verifies with OpenSSL — so both sides really use RS256 = PKCS#1 v1.5.
    @Test func openSSLInterop() async throws {
        let openssl = try requireTool("openssl", install: "apt-get install -y openssl")
        let directory = try TemporaryDirectory("auth-openssl")
        defer { directory.remove() }
        let keyPath = directory.path + "/key.pem", pubPath = directory.path + "/pub.pem", sigPath = directory.path + "/sig.bin"
        try TestKeys.c.pemRepresentation.write(toFile: keyPath, atomically: true, encoding: .utf8)
        try TestKeys.c.publicKey.pemRepresentation.write(toFile: pubPath, atomically: true, encoding: .utf8)

        let input = base64url(#"{"alg":"RS256","kid":"c1","typ":"JWT"}"#.utf8) + "." + base64url(json(Google.claims()).utf8)
        let signed = try runProcess(openssl, ["dgst", "-sha256", "-sign", keyPath], input: Array(input.utf8))
        #expect(signed.status == 0, "\(signed.stderr)")
        let harness = try Harness(keys: [(TestKeys.c, "c1")])
        let decision = await decide(harness.oidcAuthenticator(), request(bearer: input + "." + base64url(signed.stdout)))
        #expect(decision == .allowed(method: "oidc"))
        await harness.stop()

        let ours = mint(Google.claims(), key: TestKeys.c, kid: "c1").split(separator: ".")
        try Data(Base64URL.decode(ours[2].utf8)!).write(to: URL(fileURLWithPath: sigPath))
        let verified = try runProcess(
            openssl, ["dgst", "-sha256", "-verify", pubPath, "-signature", sigPath],
            input: Array("\(ours[0]).\(ours[1])".utf8))
        #expect(verified.status == 0 && String(decoding: verified.stdout, as: UTF8.self).contains("Verified OK"))
    }
}

/// Tokens minted by the official libraries (google-auth for Google OIDC, PyJWT for Entra) through
/// Tests/tools/mint_tokens.py: an implementation independent of our signer.
@Suite("Interop with google-auth and PyJWT")
struct OfficialLibraryTokenTests {
    @Test func officialTokens() async throws {
        let audience = "https://persistor.test/pubsub"
        let tenant = "11111111-aaaa-bbbb-cccc-222222222222"
        let directory = try TemporaryDirectory("auth-mint")
        defer { directory.remove() }
        let minted = try runPythonTool("mint_tokens.py", [directory.path, audience, tenant])
        let tokens = try #require(minted["tokens"] as? [String: String])
        let jwksBody = try String(contentsOfFile: directory.path + "/jwks.json", encoding: .utf8)

        let server = try JWKSServer(body: jwksBody)
        let logs = LogCapture()
        let registry = JWKSRegistry(logger: logs.logger)
        let oidc = RouteAuthenticator(
            route: "orders",
            settings: AuthSettings(
                oidc: OIDCSettings(
                    audience: audience, serviceAccounts: ["pusher@proj.iam.gserviceaccount.com"], jwksURL: server.url)),
            keys: registry, logger: logs.logger)
        let entra = RouteAuthenticator(
            route: "grid",
            settings: AuthSettings(
                entra: EntraSettings(
                    tenant: tenant, audiences: [audience], jwksURL: server.url)), keys: registry, logger: logs.logger)

        let expected: [(String, RouteAuthenticator, AuthDecision)] = [
            ("google_valid", oidc, .allowed(method: "oidc")),
            ("google_bare_issuer", oidc, .allowed(method: "oidc")),
            ("google_wrong_aud", oidc, denied(401, "aud mismatch")),
            ("google_wrong_iss", oidc, denied(401, "iss mismatch")),
            ("google_expired", oidc, denied(401, "expired")),
            ("google_other_key", oidc, denied(401, "bad signature")),
            ("hs256", oidc, denied(401, "alg not allowed")),
            ("google_wrong_email", oidc, denied(403, "email not allowed")),
            ("google_unverified_email", oidc, denied(403, "email not verified")),
            ("entra_v1_valid", entra, .allowed(method: "entra")),
            ("entra_v2_valid", entra, .allowed(method: "entra")),
            ("entra_foreign_appid", entra, denied(403, "appid mismatch")),
            ("entra_other_tenant", entra, denied(401, "iss mismatch")),
        ]
        for (name, authenticator, decision) in expected {
            let token = try #require(tokens[name], "\(name)")
            #expect(await decide(authenticator, request(bearer: token)) == decision, "\(name)")
        }
        #expect(server.fetches == 1, "both routes share one JWKS cache")
        let text = logs.text
        for token in tokens.values { #expect(!text.contains(token)) }
        await server.stop()
    }
}

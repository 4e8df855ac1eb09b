import Crypto
import Foundation
import PersistorHTTP
import Testing

@testable import PersistorAuth

/// The negative matrix: each refusal with its exact status, reason and challenge.
@Suite("Token rejections")
struct TokenRejectionTests {
    /// Runs one request against a fresh OIDC route (JWKS with key a / kid a1).
    private func oidc(_ head: HTTPRequestHead, clockSkew: Duration = .seconds(60)) async throws -> AuthDecision {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator(clockSkew: clockSkew)
        let decision = await decide(authenticator, head)
        await harness.stop()
        return decision
    }

    private func entra(_ token: String, role: String? = nil) async throws -> AuthDecision {
        let harness = try Harness()
        let decision = await decide(harness.entraAuthenticator(role: role), request(bearer: token))
        await harness.stop()
        return decision
    }

    @Test func missingAuthorizationHeader() async throws {
        #expect(try await oidc(request()) == denied(401, "missing token", "Bearer"))
    }

    @Test func otherAuthorizationScheme() async throws {
        let head = request(headers: [("Authorization", "Basic dXNlcjpwYXNz")])
        #expect(try await oidc(head) == denied(401, "not a Bearer token", "Bearer"))
    }

    @Test func emptyBearer() async throws {
        let head = request(headers: [("Authorization", "Bearer ")])
        #expect(try await oidc(head) == denied(401, "malformed token: empty"))
    }

    @Test func twoSegments() async throws {
        let token = mint(Google.claims())
        let twoSegments = token.split(separator: ".").prefix(2).joined(separator: ".")
        #expect(try await oidc(request(bearer: twoSegments)) == denied(401, "malformed token: not 3 segments"))
    }

    @Test func fourSegments() async throws {
        #expect(try await oidc(request(bearer: mint(Google.claims()) + ".x")) == denied(401, "malformed token: not 3 segments"))
    }

    @Test func badBase64() async throws {
        let token = mint(Google.claims())
        let parts = token.split(separator: ".")
        let broken = "\(parts[0]).\(parts[1])*.\(parts[2])"
        #expect(try await oidc(request(bearer: broken)) == denied(401, "malformed token: bad base64url"))
    }

    @Test func paddedBase64IsRefused() async throws {
        // Decision: strict unpadded base64url (RFC 7515 §2); `=` padding is refused.
        let token = mint(Google.claims())
        let parts = token.split(separator: ".")
        let padded = "\(parts[0])==.\(parts[1]).\(parts[2])"
        #expect(try await oidc(request(bearer: padded)) == denied(401, "malformed token: bad base64url"))
    }

    @Test func badJSON() async throws {
        let token = signRS256(headerJSON: #"{"alg":"RS256","kid":"a1"}"#, payloadJSON: #"{"aud": "x",}"#, key: TestKeys.a)
        #expect(try await oidc(request(bearer: token)) == denied(401, "malformed token: bad JSON"))
    }

    @Test func duplicateClaimIsBadJSON() async throws {
        var claims = json(Google.claims())
        claims.removeLast()
        claims += #","aud":"https://attacker.example"}"#
        let token = signRS256(headerJSON: #"{"alg":"RS256","kid":"a1"}"#, payloadJSON: claims, key: TestKeys.a)
        #expect(try await oidc(request(bearer: token)) == denied(401, "malformed token: bad JSON"))
    }

    @Test func algNone() async throws {
        let header = base64url(#"{"alg":"none","kid":"a1","typ":"JWT"}"#.utf8)
        let payload = base64url(json(Google.claims()).utf8)
        #expect(try await oidc(request(bearer: "\(header).\(payload).")) == denied(401, "alg not allowed"))
    }

    @Test func missingAlg() async throws {
        let token = signRS256(headerJSON: #"{"kid":"a1"}"#, payloadJSON: json(Google.claims()), key: TestKeys.a)
        #expect(try await oidc(request(bearer: token)) == denied(401, "malformed token: missing alg"))
    }

    /// The classic key-confusion attack: HS256 with the RSA public key as the HMAC secret.
    @Test func hs256SignedWithThePublicKey() async throws {
        let input = base64url(#"{"alg":"HS256","kid":"a1","typ":"JWT"}"#.utf8) + "." + base64url(json(Google.claims()).utf8)
        for secret in [Array(TestKeys.a.publicKey.pemRepresentation.utf8), Array(TestKeys.a.publicKey.derRepresentation)] {
            let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: secret))
            let token = input + "." + base64url(Array(mac))
            #expect(try await oidc(request(bearer: token)) == denied(401, "alg not allowed"))
        }
        // Even when someone lists HS256, there is no HMAC code path.
        let harness = try Harness()
        let lenient = harness.authenticator(AuthSettings(oidc: harness.oidc(), allowedAlgorithms: ["RS256", "HS256"]))
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array(input.utf8),
            using: SymmetricKey(data: Array(TestKeys.a.publicKey.pemRepresentation.utf8)))
        #expect(await decide(lenient, request(bearer: input + "." + base64url(Array(mac)))) == denied(401, "alg not supported"))
        await harness.stop()
    }

    @Test func rs384NotAllowedByDefault() async throws {
        let input = base64url(#"{"alg":"RS384","kid":"a1"}"#.utf8) + "." + base64url(json(Google.claims()).utf8)
        let signature = try TestKeys.a.signature(for: SHA384.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5)
        let token = input + "." + base64url(signature.rawRepresentation)
        #expect(try await oidc(request(bearer: token)) == denied(401, "alg not allowed"))
    }

    @Test func critHeader() async throws {
        let token = mint(Google.claims(), header: ["crit": ["exp"], "exp": 1])
        #expect(try await oidc(request(bearer: token)) == denied(401, "crit header"))
    }

    @Test func unexpectedTyp() async throws {
        let token = mint(Google.claims(), header: ["typ": "JWE"])
        #expect(try await oidc(request(bearer: token)) == denied(401, "bad typ"))
    }

    @Test func missingKid() async throws {
        let token = mint(Google.claims(), header: ["kid": nil])
        #expect(try await oidc(request(bearer: token)) == denied(401, "missing kid"))
    }

    @Test func badSignatureWrongKey() async throws {
        let token = mint(Google.claims(), key: TestKeys.b, kid: "a1")
        #expect(try await oidc(request(bearer: token)) == denied(401, "bad signature"))
    }

    @Test func badSignatureTamperedPayload() async throws {
        let token = mint(Google.claims())
        let parts = token.split(separator: ".")
        let forged = base64url(json(with(Google.claims(), ["email": "attacker@evil.example"])).utf8)
        #expect(try await oidc(request(bearer: "\(parts[0]).\(forged).\(parts[2])")) == denied(401, "bad signature"))
    }

    @Test func badSignaturePSSPadding() async throws {
        // RS256 is PKCS#1 v1.5; a PSS signature over the same input must not verify.
        let input = base64url(#"{"alg":"RS256","kid":"a1"}"#.utf8) + "." + base64url(json(Google.claims()).utf8)
        let pss = try TestKeys.a.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .PSS)
        #expect(try await oidc(request(bearer: input + "." + base64url(pss.rawRepresentation))) == denied(401, "bad signature"))
    }

    @Test func unknownKidAfterRefresh() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        #expect(await decide(authenticator, request(bearer: mint(Google.claims()))) == .allowed(method: "oidc"))
        #expect(harness.server.fetches == 1)
        let token = mint(Google.claims(), key: TestKeys.b, kid: "b-unknown")
        #expect(await decide(authenticator, request(bearer: token)) == denied(401, "unknown kid"))
        #expect(harness.server.fetches == 2, "one refresh before refusing")
        await harness.stop()
    }

    @Test func keyAlgMismatch() async throws {
        let harness = try Harness()
        harness.server.setBody(json(["keys": [jwk(TestKeys.a, kid: "a1", alg: "RS512")]]))
        #expect(await decide(harness.oidcAuthenticator(), request(bearer: mint(Google.claims()))) == denied(401, "key alg mismatch"))
        await harness.stop()
    }

    @Test func encryptionKeyIsNotUsed() async throws {
        let harness = try Harness()
        harness.server.setBody(json(["keys": [jwk(TestKeys.a, kid: "a1", use: "enc"), jwk(TestKeys.b, kid: "b1")]]))
        #expect(await decide(harness.oidcAuthenticator(), request(bearer: mint(Google.claims()))) == denied(401, "unknown kid"))
        await harness.stop()
    }

    @Test func wrongIssuer() async throws {
        let token = mint(with(Google.claims(), ["iss": "https://accounts.google.com.evil.example"]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "iss mismatch"))
    }

    @Test func wrongAudience() async throws {
        let token = mint(with(Google.claims(), ["aud": "https://persistor.example.com/pubsub/other"]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "aud mismatch"))
    }

    @Test func audienceIsCaseSensitive() async throws {
        let token = mint(with(Google.claims(), ["aud": Google.audience.uppercased()]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "aud mismatch"))
    }

    @Test func missingAudience() async throws {
        #expect(try await oidc(request(bearer: mint(with(Google.claims(), ["aud": nil])))) == denied(401, "missing aud"))
    }

    @Test func expired() async throws {
        let now = nowSeconds()
        let token = mint(with(Google.claims(now: now - 7200), ["exp": now - 120]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "expired"))
    }

    @Test func missingExp() async throws {
        #expect(try await oidc(request(bearer: mint(with(Google.claims(), ["exp": nil])))) == denied(401, "missing exp"))
    }

    @Test func stringExp() async throws {
        let token = mint(with(Google.claims(), ["exp": String(nowSeconds() + 3600)]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "bad exp"))
    }

    @Test func notBeforeInTheFuture() async throws {
        let token = mint(with(Google.claims(), ["nbf": nowSeconds() + 600]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "not yet valid"))
    }

    @Test func issuedInTheFuture() async throws {
        let now = nowSeconds()
        let token = mint(with(Google.claims(), ["iat": now + 600, "exp": now + 4200]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "iat in future"))
    }

    @Test func missingIatForOIDC() async throws {
        #expect(try await oidc(request(bearer: mint(with(Google.claims(), ["iat": nil])))) == denied(401, "missing iat"))
    }

    @Test func lifetimeBeyondOneDay() async throws {
        let token = mint(with(Google.claims(), ["exp": nowSeconds() + 3 * 86_400]))
        #expect(try await oidc(request(bearer: token)) == denied(401, "exp too far in future"))
    }

    @Test func emailNotAllowed() async throws {
        let token = mint(with(Google.claims(), ["email": "someone-else@my-project.iam.gserviceaccount.com"]))
        #expect(try await oidc(request(bearer: token)) == denied(403, "email not allowed"))
    }

    @Test func emailMissing() async throws {
        #expect(try await oidc(request(bearer: mint(with(Google.claims(), ["email": nil])))) == denied(403, "email not allowed"))
    }

    @Test func emailVerifiedFalse() async throws {
        let token = mint(with(Google.claims(), ["email_verified": false]))
        #expect(try await oidc(request(bearer: token)) == denied(403, "email not verified"))
    }

    @Test func emailVerifiedMissing() async throws {
        let token = mint(with(Google.claims(), ["email_verified": nil]))
        #expect(try await oidc(request(bearer: token)) == denied(403, "email not verified"))
    }

    @Test func emailVerifiedAsNumberIsNotTrue() async throws {
        let token = mint(with(Google.claims(), ["email_verified": 1]))
        #expect(try await oidc(request(bearer: token)) == denied(403, "email not verified"))
    }

    @Test func entraTokenFromAnotherTenant() async throws {
        let token = mint(Entra.v1(tenant: Entra.otherTenant))
        #expect(try await entra(token) == denied(401, "iss mismatch"))
    }

    @Test func entraTidMismatchWithRightIssuer() async throws {
        let token = mint(with(Entra.v1(), ["tid": Entra.otherTenant]))
        #expect(try await entra(token) == denied(403, "tid mismatch"))
    }

    @Test func entraForeignAppId() async throws {
        let token = mint(with(Entra.v1(), ["appid": "00000000-1111-2222-3333-444444444444"]))
        #expect(try await entra(token) == denied(403, "appid mismatch"))
    }

    @Test func entraV2ForeignAzp() async throws {
        let token = mint(with(Entra.v2(), ["azp": "00000000-1111-2222-3333-444444444444"]))
        #expect(try await entra(token) == denied(403, "azp mismatch"))
    }

    @Test func entraV2WithAppIdButNoAzp() async throws {
        // ver 2.0 names the client in azp; an appid claim does not stand in for it.
        let token = mint(with(Entra.v2(), ["azp": nil, "appid": Entra.eventGrid]))
        #expect(try await entra(token) == denied(403, "azp mismatch"))
    }

    @Test func entraMissingRequiredRole() async throws {
        let token = mint(with(Entra.v1(), ["roles": nil]))
        #expect(try await entra(token, role: Entra.role) == denied(403, "missing role"))
        let other = mint(with(Entra.v1(), ["roles": ["SomethingElse"]]))
        #expect(try await entra(other, role: Entra.role) == denied(403, "missing role"))
    }

    @Test func entraWrongAudience() async throws {
        let token = mint(with(Entra.v2(), ["aud": "api://someone-else"]))
        #expect(try await entra(token) == denied(401, "aud mismatch"))
    }

    @Test func twoAuthorizationHeaders() async throws {
        let token = mint(Google.claims())
        let head = request(bearer: token, headers: [("authorization", "Bearer \(token)")])
        #expect(try await oidc(head) == denied(401, "multiple Authorization headers"))
    }

    @Test func tokenInHeaderAndQuery() async throws {
        let token = mint(Google.claims())
        let head = request(bearer: token, target: "/pubsub/orders?access_token=\(token)")
        #expect(try await oidc(head) == denied(401, "token in header and query"))
    }

    @Test func twoAccessTokenParameters() async throws {
        let token = mint(Google.claims())
        let head = request(target: "/pubsub/orders?access_token=\(token)&access_token=\(token)")
        #expect(try await oidc(head) == denied(401, "multiple access_token parameters"))
    }

    @Test func tokenTooLarge() async throws {
        let token = mint(with(Google.claims(), ["pad": String(repeating: "x", count: 16 * 1024)]))
        #expect(token.utf8.count > 16 * 1024)
        #expect(try await oidc(request(bearer: token)) == denied(401, "token too large"))
    }

    @Test func failuresAreCountedAndLoggedWithoutTheToken() async throws {
        let harness = try Harness()
        let authenticator = harness.oidcAuthenticator()
        let now = nowSeconds()
        let expired = mint(with(Google.claims(now: now - 7200), ["exp": now - 600]))
        let wrongAud = mint(with(Google.claims(), ["aud": "https://elsewhere.example"]))
        _ = await decide(authenticator, request(bearer: expired))
        _ = await decide(authenticator, request(bearer: expired))
        _ = await decide(authenticator, request(bearer: wrongAud))
        _ = await decide(authenticator, request())
        #expect(authenticator.failureCounts == ["expired": 2, "aud mismatch": 1, "missing token": 1])
        let failures = harness.logs.all.filter { $0.contains("auth failed") }
        #expect(failures.count == 4)
        #expect(failures.allSatisfy { $0.hasPrefix("warning") && $0.contains("route=orders") && $0.contains("method=oidc") })
        #expect(failures.contains { $0.contains("reason=expired") })
        #expect(failures.contains { $0.contains("reason=aud mismatch") })
        let text = harness.logs.text
        for token in [expired, wrongAud] {
            for part in token.split(separator: ".") { #expect(!text.contains(part)) }
        }
        await harness.stop()
    }
}

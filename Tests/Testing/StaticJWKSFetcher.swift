import Crypto
import CryptoExtras
import Foundation
import PersistorAuth
import PersistorCore
import PersistorTestSupport

/// A `JWKSFetcher` that answers every URL with one JWKS document held in memory (or fails while
/// told to), and records the URLs asked for: token routes without a network, and without a JWKS
/// server on a port.
package final class StaticJWKSFetcher: JWKSFetcher {
    /// What a failed fetch throws.
    package struct Unavailable: Error, CustomStringConvertible {
        package var description: String { "the JWKS fetcher is set to fail" }
    }

    private struct State {
        var body: String
        var maxAge: Duration?
        var failing = false
        var fetched: [String] = []
    }

    private let state: LockedBox<State>

    /// - Parameter maxAge: the freshness lifetime the answer carries, as `Cache-Control: max-age`
    ///   would (`nil`: none, so the cache applies its own default).
    package init(body: String, maxAge: Duration? = .seconds(3600)) {
        state = LockedBox(State(body: body, maxAge: maxAge))
    }

    /// Serves the public halves of `keys`.
    package convenience init(keys: [TestSigningKey], maxAge: Duration? = .seconds(3600)) {
        self.init(body: TestSigningKey.jwks(keys), maxAge: maxAge)
    }

    /// Every URL fetched so far, in order (failed fetches included).
    package var fetchedURLs: [String] { state.get().fetched }

    /// From now on, fetches throw `Unavailable` (or succeed again).
    package func setFailing(_ failing: Bool) { state.update { $0.failing = failing } }

    package func setKeys(_ keys: [TestSigningKey]) { state.update { $0.body = TestSigningKey.jwks(keys) } }

    package func fetch(_ url: String) async throws -> (body: [UInt8], maxAge: Duration?) {
        let state = self.state.update { state in
            state.fetched.append(url)
            return state
        }
        if state.failing { throw Unavailable() }
        return (Array(state.body.utf8), state.maxAge)
    }
}

/// An RSA key that signs RS256 tokens (RFC 7515) and appears in a JWKS (RFC 7517) under `kid`.
package struct TestSigningKey: Sendable {
    package let kid: String
    private let key: _RSA.Signing.PrivateKey

    /// A fresh 2048-bit key (generation takes a moment: make one per suite, not per request).
    package init(kid: String) throws {
        self.kid = kid
        key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    }

    /// The JWKS document with the public halves of `keys`.
    package static func jwks(_ keys: [TestSigningKey]) -> String {
        let entries = keys.map { signing in
            let primitives = try! signing.key.publicKey.getKeyPrimitives()
            return #"{"kty":"RSA","alg":"RS256","use":"sig","kid":\#(jsonStringLiteral(signing.kid)),"#
                + #""n":"\#(Base64URL.encode(primitives.modulus))","e":"\#(Base64URL.encode(primitives.publicExponent))"}"#
        }
        return #"{"keys":[\#(entries.joined(separator: ","))]}"#
    }

    /// A compact JWS of `claims` (JSON object text, used verbatim) with an RS256 header naming this key.
    package func token(claims: String) throws -> String {
        let header = #"{"alg":"RS256","kid":\#(jsonStringLiteral(kid)),"typ":"JWT"}"#
        let input = Base64URL.encode(header.utf8) + "." + Base64URL.encode(claims.utf8)
        let signature = try key.signature(for: SHA256.hash(data: Array(input.utf8)), padding: .insecurePKCS1v1_5)
        return input + "." + Base64URL.encode(signature.rawRepresentation)
    }

    /// A Google-signed OIDC ID token as Pub/Sub push sends it
    /// (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions), valid for an hour from now.
    package func googleIDToken(audience: String, email: String) throws -> String {
        let now = Int(Date().timeIntervalSince1970)
        return try token(
            claims: """
                {"aud":\(jsonStringLiteral(audience)),"azp":"113774264463038321964","email":\(jsonStringLiteral(email)),\
                "email_verified":true,"exp":\(now + 3600),"iat":\(now),"iss":"https://accounts.google.com",\
                "sub":"113774264463038321964"}
                """)
    }
}

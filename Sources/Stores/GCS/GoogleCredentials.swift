import Crypto
import CryptoExtras
import Foundation
import PersistorCore

/// Google OAuth access tokens for the storage API, found by Google's conventions
/// (docs/stores.md#google-cloud-storage): `GOOGLE_APPLICATION_CREDENTIALS` names a service-account
/// key file whose signed assertion is exchanged at its `token_uri`; without it, the metadata server
/// of GCE, GKE, Cloud Run or Cloud Functions (`GCE_METADATA_HOST` overrides its `host[:port]`) hands
/// out the attached account's token.
enum GoogleCredentials {
    /// The source `environment` selects. A key file that cannot be used throws here, at start-up.
    static func source(environment: [String: String], client: StoreHTTPClient) throws(BlobStoreError) -> any CredentialSource<String> {
        if let path = environment["GOOGLE_APPLICATION_CREDENTIALS"], !path.isEmpty {
            let account = try GoogleServiceAccount(keyFile: path, store: client.store)
            return ServiceAccountTokenSource(account: account, client: client)
        }
        let host = environment["GCE_METADATA_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "metadata.google.internal"
        guard let url = URL(string: "http://\(host)/computeMetadata/v1/instance/service-accounts/default/token"),
            url.host != nil, url.path == "/computeMetadata/v1/instance/service-accounts/default/token"
        else {
            throw BlobStoreError(store: client.store, key: nil, message: "GCE_METADATA_HOST '\(host)' is not a host[:port]", retryable: false)
        }
        return MetadataServerTokenSource(url: url, client: client)
    }

    /// The `error` of an OAuth error answer (`invalid_grant`, …).
    @Sendable static func oauthErrorCode(_ response: StoreHTTPResponse) -> String? {
        struct OAuthError: Decodable { var error: String? }
        return (try? JSONDecoder().decode(OAuthError.self, from: Data(response.body)))?.error
    }

    /// The access token and lifetime of a token answer (token endpoint and metadata server alike).
    static func token(from response: StoreHTTPResponse, store: String, issuer: String) throws(BlobStoreError) -> Expiring<String> {
        struct Token: Decodable {
            var access_token: String
            var expires_in: Double
        }
        guard let token = try? JSONDecoder().decode(Token.self, from: Data(response.body)), !token.access_token.isEmpty else {
            throw BlobStoreError(
                store: store, key: nil, status: response.status,
                message: "the \(issuer)'s answer has no access_token and expires_in", retryable: true)
        }
        return Expiring(token.access_token, expiresAt: Date().addingTimeInterval(token.expires_in))
    }
}

/// A service-account key file (`"type": "service_account"`), and the RS256-signed JWT assertion
/// it is exchanged with for an access token (RFC 7523; https://developers.google.com/identity/protocols/oauth2/service-account).
package struct GoogleServiceAccount: Sendable {
    package let clientEmail: String
    /// The `kid` of the assertion's header.
    package let privateKeyID: String?
    package let tokenURI: URL
    /// The key file's path, for errors.
    package let keyFile: String
    /// The store's name, for errors.
    private let store: String
    private let privateKey: _RSA.Signing.PrivateKey

    /// The scope every token is asked for.
    package static let scope = "https://www.googleapis.com/auth/devstorage.read_write"
    /// The assertion's audience: always Google's token endpoint, whatever `token_uri` says, as google-auth does.
    package static let audience = "https://oauth2.googleapis.com/token"

    /// Reads and checks a key file. The errors name the file and what is wrong with it, never its contents.
    init(keyFile path: String, store: String) throws(BlobStoreError) {
        guard let contents = FileManager.default.contents(atPath: path) else {
            let cause = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw BlobStoreError(store: store, key: nil, message: "GOOGLE_APPLICATION_CREDENTIALS file \(path) \(cause)", retryable: false)
        }
        try self.init(json: [UInt8](contents), keyFile: path, store: store)
    }

    package init(json: [UInt8], keyFile path: String, store: String) throws(BlobStoreError) {
        func invalid(_ why: String) -> BlobStoreError {
            BlobStoreError(store: store, key: nil, message: "GOOGLE_APPLICATION_CREDENTIALS file \(path): \(why)", retryable: false)
        }
        struct KeyFile: Decodable {
            var type: String?
            var client_email: String?
            var private_key: String?
            var private_key_id: String?
            var token_uri: String?
        }
        guard let file = try? JSONDecoder().decode(KeyFile.self, from: Data(json)) else {
            throw invalid("not a JSON object with string fields")
        }
        guard let type = file.type, type == "service_account" else {
            throw invalid("type is \(file.type.map { "'\($0.prefix(40))'" } ?? "missing"), expected 'service_account'")
        }
        guard let email = file.client_email, !email.isEmpty else { throw invalid("client_email is missing") }
        guard let pem = file.private_key, !pem.isEmpty else { throw invalid("private_key is missing") }
        guard let tokenURIText = file.token_uri, !tokenURIText.isEmpty else { throw invalid("token_uri is missing") }
        guard let tokenURI = URL(string: tokenURIText), ["http", "https"].contains(tokenURI.scheme?.lowercased() ?? ""), tokenURI.host != nil else {
            throw invalid("token_uri is not an http(s) URL")
        }
        do {
            privateKey = try _RSA.Signing.PrivateKey(pemRepresentation: pem)
        } catch {
            throw invalid("private_key is not a PEM RSA private key of at least 2048 bits")
        }
        clientEmail = email
        privateKeyID = file.private_key_id.flatMap { $0.isEmpty ? nil : $0 }
        self.tokenURI = tokenURI
        keyFile = path
        self.store = store
    }

    /// The JWT posted to the token endpoint: header `{"alg":"RS256","kid":…,"typ":"JWT"}`, claims
    /// `iss` (the account), `scope`, `aud`, `iat` and `exp` one hour later.
    package func assertion(issuedAt: Date) throws(BlobStoreError) -> String {
        struct Header: Encodable { var alg = "RS256"; var typ = "JWT"; var kid: String? }
        struct Claims: Encodable { var iss: String; var scope: String; var aud: String; var iat: Int; var exp: Int }
        let iat = Int(issuedAt.timeIntervalSince1970)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let header: Data, claims: Data
        do {
            header = try encoder.encode(Header(kid: privateKeyID))
            claims = try encoder.encode(Claims(iss: clientEmail, scope: Self.scope, aud: Self.audience, iat: iat, exp: iat + 3600))
        } catch {
            throw BlobStoreError(store: store, key: nil, message: "cannot encode the JWT assertion", retryable: false)
        }
        let signingInput = Base64URL.encode(header) + "." + Base64URL.encode(claims)
        return signingInput + "." + Base64URL.encode(try signature(for: Array(signingInput.utf8)))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (RS256) over `signingInput`.
    package func signature(for signingInput: [UInt8]) throws(BlobStoreError) -> [UInt8] {
        do {
            return [UInt8](try privateKey.signature(for: signingInput, padding: .insecurePKCS1v1_5).rawRepresentation)
        } catch {
            throw BlobStoreError(store: store, key: nil, message: "RS256 signing failed", retryable: false)
        }
    }
}

/// Access tokens from the OAuth JWT-bearer grant with a service account's signed assertion.
struct ServiceAccountTokenSource: CredentialSource {
    let account: GoogleServiceAccount
    let client: StoreHTTPClient

    func fetch() async throws(BlobStoreError) -> Expiring<String> {
        let response = try await client.send(key: nil, errorCode: GoogleCredentials.oauthErrorCode) { () throws(BlobStoreError) in
            let assertion = try account.assertion(issuedAt: Date())
            return StoreHTTPRequest(
                method: "POST", url: account.tokenURI,
                headers: [("Content-Type", "application/x-www-form-urlencoded")],
                body: Array("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=\(assertion)".utf8))
        }
        guard (200..<300).contains(response.status) else {
            var error = client.failure(key: nil, response: response, code: GoogleCredentials.oauthErrorCode(response), retryable: false)
            error.message = "the token endpoint refused the assertion of service account \(account.clientEmail) (key file \(account.keyFile))"
            throw error
        }
        return try GoogleCredentials.token(from: response, store: client.store, issuer: "token endpoint")
    }
}

/// Access tokens of the instance's service account from the metadata server.
struct MetadataServerTokenSource: CredentialSource {
    let url: URL
    let client: StoreHTTPClient

    func fetch() async throws(BlobStoreError) -> Expiring<String> {
        let response = try await client.send(key: nil, errorCode: GoogleCredentials.oauthErrorCode) {
            StoreHTTPRequest(method: "GET", url: url, headers: [("Metadata-Flavor", "Google")])
        }
        guard (200..<300).contains(response.status), response.header("metadata-flavor") == "Google" else {
            var error = client.failure(key: nil, response: response, code: GoogleCredentials.oauthErrorCode(response), retryable: false)
            error.message = "the metadata server at \(url.host ?? "")\(url.port.map { ":\($0)" } ?? "") gave no token"
            throw error
        }
        return try GoogleCredentials.token(from: response, store: client.store, issuer: "metadata server")
    }
}

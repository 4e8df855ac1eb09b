import Foundation
import PersistorCore

/// Where an S3 store's keys come from, in the AWS SDKs' order (without shared config files or
/// container credentials): `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`),
/// else the EC2 instance metadata service (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`.
enum S3CredentialProvider: Sendable {
    case fixed(S3Credentials)
    /// Temporary keys from IMDS, refreshed before they expire.
    case instanceMetadata(CredentialCache<S3Credentials>)

    /// Picks the source from the environment; throws (non-retryable) when no source can work.
    static func resolve(environment: [String: String], client: StoreHTTPClient) throws(BlobStoreError) -> S3CredentialProvider {
        func setting(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        func missing(_ message: String) -> BlobStoreError {
            BlobStoreError(store: client.store, key: nil, message: message, retryable: false)
        }
        switch (setting("AWS_ACCESS_KEY_ID"), setting("AWS_SECRET_ACCESS_KEY")) {
        case let (id?, secret?):
            return .fixed(S3Credentials(accessKeyID: id, secretAccessKey: secret, sessionToken: setting("AWS_SESSION_TOKEN")))
        case (_?, nil):
            throw missing("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
        case (nil, _?):
            throw missing("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not")
        case (nil, nil):
            if setting("AWS_EC2_METADATA_DISABLED")?.lowercased() == "true" {
                throw missing(
                    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or allow the instance metadata service (AWS_EC2_METADATA_DISABLED is true)"
                )
            }
            var endpoint = setting("AWS_EC2_METADATA_SERVICE_ENDPOINT") ?? "http://169.254.169.254"
            while endpoint.hasSuffix("/") { endpoint.removeLast() }
            guard let base = URL(string: endpoint), ["http", "https"].contains(base.scheme?.lowercased() ?? ""), base.host != nil else {
                throw missing("AWS_EC2_METADATA_SERVICE_ENDPOINT='\(endpoint)' is not an http(s)://host[:port] URL")
            }
            return .instanceMetadata(CredentialCache(source: InstanceMetadataCredentials(endpoint: endpoint, client: client)))
        }
    }

    func get() async throws(BlobStoreError) -> S3Credentials {
        switch self {
        case .fixed(let credentials): credentials
        case .instanceMetadata(let cache): try await cache.get()
        }
    }
}

/// The instance role's temporary keys from IMDSv2
/// (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-security-credentials.html):
/// a session token (`PUT /latest/api/token`), the role name, then the role's keys.
struct InstanceMetadataCredentials: CredentialSource {
    /// `http://169.254.169.254` or `AWS_EC2_METADATA_SERVICE_ENDPOINT`, without a trailing `/`.
    let endpoint: String
    let client: StoreHTTPClient

    private struct RoleCredentials: Decodable {
        var accessKeyID: String
        var secretAccessKey: String
        var token: String
        var expiration: String

        enum CodingKeys: String, CodingKey {
            case accessKeyID = "AccessKeyId", secretAccessKey = "SecretAccessKey", token = "Token", expiration = "Expiration"
        }
    }

    func fetch() async throws(BlobStoreError) -> Expiring<S3Credentials> {
        let token = try await call(
            "PUT", "/latest/api/token", headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
            what: "the session token")
        let session = [(name: "X-aws-ec2-metadata-token", value: String(decoding: token, as: UTF8.self))]
        let roles = try await call("GET", "/latest/meta-data/iam/security-credentials/", headers: session, what: "the role name")
        guard
            let role = String(decoding: roles, as: UTF8.self).split(whereSeparator: \.isNewline).first
                .map({ $0.trimmingCharacters(in: .whitespaces) }), !role.isEmpty
        else {
            throw failure("no IAM role is attached to this instance")
        }
        let body = try await call(
            "GET", "/latest/meta-data/iam/security-credentials/" + SigV4.uriEncode(role),
            headers: session, what: "the role's credentials")
        guard let keys = try? JSONDecoder().decode(RoleCredentials.self, from: Data(body)) else {
            throw failure("the role's credentials are not the expected JSON (AccessKeyId, SecretAccessKey, Token, Expiration)")
        }
        guard let expiresAt = try? Date(keys.expiration, strategy: .iso8601) else {
            throw failure("the role's credentials have an unreadable Expiration")
        }
        return Expiring(
            S3Credentials(accessKeyID: keys.accessKeyID, secretAccessKey: keys.secretAccessKey, sessionToken: keys.token),
            expiresAt: expiresAt)
    }

    private func call(
        _ method: String, _ path: String, headers: [(name: String, value: String)], what: String
    ) async throws(BlobStoreError) -> [UInt8] {
        let request = StoreHTTPRequest(method: method, url: URL(string: endpoint + path)!, headers: headers)
        let response: StoreHTTPResponse
        do {
            response = try await client.send(key: nil) { request }
        } catch {
            throw failure("\(what): \(error.message)", retryable: error.retryable)
        }
        guard response.status == 200 else {
            throw failure("\(what): HTTP \(response.status)", retryable: response.status != 404)
        }
        return response.body
    }

    private func failure(_ message: String, retryable: Bool = true) -> BlobStoreError {
        BlobStoreError(store: client.store, key: nil, message: "instance metadata (IMDSv2) credentials: \(message)", retryable: retryable)
    }
}

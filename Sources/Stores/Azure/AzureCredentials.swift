import Foundation
import PersistorCore

/// How the Azure store authorizes its requests.
enum AzureAuthorization: Sendable {
    /// `Authorization: SharedKey account:signature`.
    case sharedKey(AzureSharedKey)
    /// A SAS query string (without `?`) appended to every request URL; no `Authorization`.
    case sas(String)
    /// `Authorization: Bearer token`, tokens from a managed identity endpoint.
    case bearer(CredentialCache<String>)
}

/// The blob endpoint and authorization, resolved from the environment (docs/stores.md#azure-blob-storage):
///
/// 1. `AZURE_STORAGE_CONNECTION_STRING` with `AccountKey` (SharedKey), `SharedAccessSignature` or
///    `UseDevelopmentStorage=true`. A connection string without a credential only sets the endpoint
///    (e.g. `BlobEndpoint=` for an emulator); the credential then comes from the steps below.
/// 2. `AZURE_STORAGE_KEY` (SharedKey; `AZURE_STORAGE_ACCOUNT`, if set, must name the URL's account).
/// 3. `AZURE_STORAGE_SAS_TOKEN`.
/// 4. Managed identity: App Service / Functions / Container Apps when `IDENTITY_ENDPOINT` and
///    `IDENTITY_HEADER` are set, else IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST` overrides
///    `http://169.254.169.254`); `AZURE_CLIENT_ID` picks a user-assigned identity.
///
/// The endpoint defaults to `https://{account}.blob.core.windows.net`. Bearer tokens are sent
/// only to https endpoints, or to loopback ones (tests).
struct AzureAccess: Sendable {
    let endpoint: String
    let authorization: AzureAuthorization

    static let tokenResource = "https://storage.azure.com/"

    static func resolve(
        account: String, environment: [String: String],
        client: StoreHTTPClient
    ) throws(AzureConfigurationError) -> AzureAccess {
        func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        var endpoint = "https://\(account).blob.core.windows.net"
        if let text = variable("AZURE_STORAGE_CONNECTION_STRING") {
            let connection: AzureConnectionString
            do {
                connection = try AzureConnectionString(text)
            } catch {
                throw AzureConfigurationError("AZURE_STORAGE_CONNECTION_STRING: \(error)")
            }
            if let name = connection.accountName, name != account {
                throw AzureConfigurationError("the connection string's AccountName '\(name)' is not the store URL's account '\(account)'")
            }
            endpoint = connection.endpoint(account: account)
            if let key = connection.accountKey, let sharedKey = AzureSharedKey(account: account, base64Key: key) {
                return AzureAccess(endpoint: endpoint, authorization: .sharedKey(sharedKey))
            }
            if let sas = connection.sharedAccessSignature {
                return AzureAccess(endpoint: endpoint, authorization: .sas(sas))
            }
        }
        if let key = variable("AZURE_STORAGE_KEY") {
            if let name = variable("AZURE_STORAGE_ACCOUNT"), name != account {
                throw AzureConfigurationError("AZURE_STORAGE_ACCOUNT '\(name)' is not the store URL's account '\(account)'")
            }
            guard let sharedKey = AzureSharedKey(account: account, base64Key: key) else {
                throw AzureConfigurationError("AZURE_STORAGE_KEY is not base64")
            }
            return AzureAccess(endpoint: endpoint, authorization: .sharedKey(sharedKey))
        }
        if let sas = variable("AZURE_STORAGE_SAS_TOKEN") {
            return AzureAccess(endpoint: endpoint, authorization: .sas(sas.hasPrefix("?") ? String(sas.dropFirst()) : sas))
        }
        guard let url = URL(string: endpoint), url.scheme == "https" || isLoopback(url) else {
            throw AzureConfigurationError(
                "managed identity tokens are sent only over https, and the blob endpoint is \(endpoint) (plain http is allowed for loopback endpoints only)"
            )
        }
        let identity = try AzureManagedIdentity(environment: environment, client: client)
        return AzureAccess(endpoint: endpoint, authorization: .bearer(CredentialCache(source: identity)))
    }

    static func isLoopback(_ url: URL) -> Bool {
        guard let host = url.host?.lowercased() else { return false }
        return host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

/// Access tokens for Azure Storage from a managed identity endpoint: App Service's
/// (`IDENTITY_ENDPOINT`, `X-IDENTITY-HEADER`, api-version 2019-08-01) or IMDS (`Metadata: true`,
/// api-version 2018-02-01). `expires_on` (epoch seconds) or `expires_in` (seconds) may arrive as
/// strings or numbers.
struct AzureManagedIdentity: CredentialSource {
    /// Where tokens come from, for errors, e.g. `IMDS at http://169.254.169.254`.
    let origin: String
    let tokenURL: URL
    let headers: [(name: String, value: String)]
    let client: StoreHTTPClient
    /// IMDS also answers 404 (identity not assigned yet) and 410 (updating) for a while.
    let retryStatuses: Set<Int>
    /// Names what failed in errors, and why managed identity is in use at all.
    static let subject =
        "managed identity token (used because neither AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY nor AZURE_STORAGE_SAS_TOKEN gives a key or SAS)"

    init(environment: [String: String], client: StoreHTTPClient) throws(AzureConfigurationError) {
        func variable(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let resource =
            "resource=" + AzureBlobStore.percentEncoded(AzureAccess.tokenResource)
            + (variable("AZURE_CLIENT_ID").map { "&client_id=" + AzureBlobStore.percentEncoded($0) } ?? "")
        let text: String
        if let endpoint = variable("IDENTITY_ENDPOINT"), let secret = variable("IDENTITY_HEADER") {
            origin = "the App Service identity endpoint \(endpoint)"
            text = endpoint + (endpoint.contains("?") ? "&" : "?") + "api-version=2019-08-01&" + resource
            headers = [("X-IDENTITY-HEADER", secret)]
            retryStatuses = []
        } else {
            var host = variable("AZURE_POD_IDENTITY_AUTHORITY_HOST") ?? "http://169.254.169.254"
            if host.hasSuffix("/") { host.removeLast() }
            origin = "IMDS at \(host)"
            text = host + "/metadata/identity/oauth2/token?api-version=2018-02-01&" + resource
            headers = [("Metadata", "true")]
            retryStatuses = [404, 410]
        }
        guard let url = URL(string: text), url.host != nil else {
            throw AzureConfigurationError("the managed identity token URL is not valid: \(origin)")
        }
        tokenURL = url
        self.client = client
    }

    func fetch() async throws(BlobStoreError) -> Expiring<String> {
        let retryStatuses = self.retryStatuses
        let response: StoreHTTPResponse
        do {
            response = try await client.send(key: nil, retryable: { StoreHTTPClient.isRetryable($0) || retryStatuses.contains($0.status) }) {
                StoreHTTPRequest(method: "GET", url: tokenURL, headers: headers)
            }
        } catch {
            var error = error
            error.message = "\(Self.subject) from \(origin): \(error.message)"
            throw error
        }
        let fields = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        guard response.status == 200 else {
            throw BlobStoreError(
                store: client.store, key: nil, status: response.status, code: fields["error"] as? String,
                message: "\(Self.subject) from \(origin): HTTP \(response.status)",
                retryable: StoreHTTPClient.isRetryable(response))
        }
        func seconds(_ name: String) -> Double? {
            switch fields[name] {
            case let text as String: Double(text)
            case let number as NSNumber: number.doubleValue
            default: nil
            }
        }
        let expiry =
            seconds("expires_on").map { Date(timeIntervalSince1970: $0) }
            ?? seconds("expires_in").map { Date().addingTimeInterval($0) }
        guard let token = fields["access_token"] as? String, !token.isEmpty, let expiry else {
            throw BlobStoreError(
                store: client.store, key: nil, status: response.status,
                message: "\(Self.subject) from \(origin): the answer lacks access_token or expires_on/expires_in",
                retryable: true)
        }
        return Expiring(token, expiresAt: expiry)
    }
}

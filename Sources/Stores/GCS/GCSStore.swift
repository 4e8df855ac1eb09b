import Foundation
import PersistorCore

/// Google Cloud Storage through the JSON API (`gs://bucket/prefix`, see `GCSLocation`).
///
/// Every object is one `uploadType=multipart` upload: a JSON part with `name`, `contentType`,
/// `contentEncoding`, `metadata` and `crc32c`, then the bytes as stored. GCS checks the bytes it
/// received against `crc32c` and refuses the upload when they differ, so a damaged body is never
/// stored (https://cloud.google.com/storage/docs/json_api/v1/objects/insert). The encoding is set
/// only in the JSON part, never as a `Content-Encoding` request header, which GCS would take as
/// transport compression and undo. Metadata values go in the JSON as UTF-8, so any Unicode stays as given.
/// Create-only writes add `ifGenerationMatch=0`; the 412 an existing object gets is `.alreadyExists`.
///
/// Endpoint and credentials: `?endpoint=` in the URL, with credentials; else `STORAGE_EMULATOR_HOST`
/// (`http://host:port`, or `host:port` meaning http) without credentials, as Google's clients do;
/// else `https://storage.googleapis.com`. Credentials come from `GoogleCredentials`.
package struct GCSStore: BlobWriter {
    package let name: String
    private let location: GCSLocation
    private let client: StoreHTTPClient
    /// Nil for an emulator, which takes no credentials.
    private let tokens: CredentialCache<String>?
    private let uploadURL: URL
    private let createOnlyUploadURL: URL

    static let defaultEndpoint = URL(string: "https://storage.googleapis.com")!

    /// Parses the URL and resolves endpoint and credentials; an unusable key file throws here.
    package init(
        url: String, environment: [String: String], policy: StoreRetryPolicy = StoreRetryPolicy(),
        transport: any StoreHTTPTransport
    ) throws(BlobStoreError) {
        location = try GCSLocation(parsing: url)
        name = location.name
        client = StoreHTTPClient(store: name, transport: transport, policy: policy)
        let endpoint: URL
        if let explicit = location.endpoint {
            endpoint = explicit
            tokens = CredentialCache(source: try GoogleCredentials.source(environment: environment, client: client))
        } else if let emulator = environment["STORAGE_EMULATOR_HOST"], !emulator.isEmpty {
            endpoint = try GCSLocation.endpoint(emulator, named: "STORAGE_EMULATOR_HOST", store: name)
            tokens = nil
        } else {
            endpoint = Self.defaultEndpoint
            tokens = CredentialCache(source: try GoogleCredentials.source(environment: environment, client: client))
        }
        // Bucket names are limited to URL-safe characters (`GCSLocation.isValidBucketName`).
        let upload = endpoint.absoluteString + "/upload/storage/v1/b/" + location.bucket + "/o?uploadType=multipart"
        uploadURL = URL(string: upload)!
        createOnlyUploadURL = URL(string: upload + "&ifGenerationMatch=0")!
    }

    package func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        guard Self.isValidKey(blob.key) else {
            throw BlobStoreError(
                store: name, key: blob.key, message: "object keys are relative paths without empty segments or control characters", retryable: false)
        }
        let boundary = Self.makeBoundary()
        let body = try multipartBody(blob, boundary: boundary)
        let url = blob.createOnly ? createOnlyUploadURL : uploadURL
        let response = try await client.send(key: blob.key, errorCode: Self.errorCode) { () throws(BlobStoreError) in
            var headers = [(name: "Content-Type", value: "multipart/related; boundary=\(boundary)")]
            if let tokens { headers.append((name: "Authorization", value: "Bearer " + (try await tokens.get()))) }
            return StoreHTTPRequest(method: "POST", url: url, headers: headers, body: body)
        }
        switch response.status {
        case 200..<300: return .created
        case 412 where blob.createOnly: return .alreadyExists
        case 401:
            // The token was revoked or expired early: fetch a new one next time, and let the sender retry.
            await tokens?.invalidate()
            throw client.failure(key: blob.key, response: response, code: Self.errorCode(response), retryable: true)
        default: throw client.failure(key: blob.key, response: response, code: Self.errorCode(response))
        }
    }

    /// The `multipart/related` body: the object resource as JSON, then the bytes (RFC 2387;
    /// https://cloud.google.com/storage/docs/json_api/v1/how-tos/multipart-upload).
    private func multipartBody(_ blob: Blob, boundary: String) throws(BlobStoreError) -> [UInt8] {
        struct Resource: Encodable {
            var name: String
            var contentType: String
            var contentEncoding: String?
            var metadata: [String: String]?
            var crc32c: String
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let resource: Data
        do {
            resource = try encoder.encode(
                Resource(
                    name: location.objectName(for: blob.key), contentType: blob.contentType,
                    contentEncoding: blob.contentEncoding,
                    metadata: blob.metadata.isEmpty ? nil : blob.metadata,
                    crc32c: CRC32C.base64(blob.bytes)))
        } catch {
            throw BlobStoreError(store: name, key: blob.key, message: "cannot encode the object resource", retryable: false)
        }
        var body: [UInt8] = []
        body.reserveCapacity(blob.bytes.count + resource.count + 256)
        body += Array("--\(boundary)\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".utf8)
        body += resource
        body += Array("\r\n--\(boundary)\r\nContent-Type: \(blob.contentType)\r\n\r\n".utf8)
        body += blob.bytes
        body += Array("\r\n--\(boundary)--\r\n".utf8)
        return body
    }

    /// 128 random bits, so the delimiter cannot plausibly occur in the object's bytes.
    static func makeBoundary() -> String {
        "persistor-" + String(UInt64.random(in: 0...UInt64.max), radix: 16) + String(UInt64.random(in: 0...UInt64.max), radix: 16)
    }

    static func isValidKey(_ key: String) -> Bool {
        !key.isEmpty && !key.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty)
            && !key.unicodeScalars.contains { $0.properties.generalCategory == .control }
    }

    /// The reason of a JSON API error answer (`error.errors[0].reason`, else `error.status`).
    /// Nothing else of the body is kept.
    @Sendable static func errorCode(_ response: StoreHTTPResponse) -> String? {
        struct Answer: Decodable {
            struct Failure: Decodable {
                struct Item: Decodable { var reason: String? }
                var errors: [Item]?
                var status: String?
            }
            var error: Failure?
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(response.body)) else { return nil }
        return answer.error?.errors?.first?.reason ?? answer.error?.status
    }
}

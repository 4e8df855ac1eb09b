import Crypto
import Foundation
import PersistorCore

/// An S3 bucket (or an S3-compatible store) under a key prefix: `s3://bucket/prefix`.
///
/// Each blob is one PutObject signed with SigV4 over the payload hash (S3 rejects a body that does
/// not match it); the same SHA-256 goes as `x-amz-checksum-sha256`, which S3 keeps as the object's
/// checksum and Object Lock buckets require. Create-only writes send `If-None-Match: *`; S3's 412
/// means the object exists.
/// A 409 `ConditionalRequestConflict` (a concurrent conditional write) and a 400 `RequestTimeout`
/// are retried like 5xx. See `S3Location` for the endpoint and `S3CredentialProvider` for the keys.
///
/// Metadata goes as `x-amz-meta-*` headers, which S3 stores as US-ASCII with lower-cased names:
/// names are lower-cased, and in names and values every byte outside printable ASCII, and `%`, is
/// percent-encoded (UTF-8, `%XX`), as are a leading or trailing space of a value and spaces and
/// HTTP separators in a name. A plain-ASCII value reads back unchanged, and any value decodes back
/// exactly with a percent-decoder.
struct S3Store: BlobWriter {
    let name: String
    let location: S3Location
    let credentials: S3CredentialProvider
    let client: StoreHTTPClient

    init(url: String, environment: [String: String], policy: StoreRetryPolicy, transport: any StoreHTTPTransport) throws(BlobStoreError) {
        location = try S3Location(url: url, environment: environment)
        name = location.storeName
        client = StoreHTTPClient(store: name, transport: transport, policy: policy)
        credentials = try S3CredentialProvider.resolve(environment: environment, client: client)
    }

    func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        let key = location.objectKey(blob.key)
        let response = try await client.send(key: key, errorCode: { Self.errorDetail($0).code }, retryable: Self.isRetryable) {
            () async throws(BlobStoreError) in
            let keys = try await credentials.get()
            return request(for: blob, credentials: keys, date: Date()).request
        }
        switch response.status {
        case 200..<300: return .created
        case 412 where blob.createOnly: return .alreadyExists
        default:
            let detail = Self.errorDetail(response)
            var error = client.failure(key: key, response: response, code: detail.code)
            if let message = detail.message { error.message += ": " + message }
            throw error
        }
    }

    /// The signed PutObject for a blob (a new signature per attempt).
    func request(for blob: Blob, credentials: S3Credentials, date: Date) -> (request: StoreHTTPRequest, signature: SigV4Signature) {
        let key = location.objectKey(blob.key)
        let digest = SHA256.hash(data: blob.bytes)
        let payloadHash = Hex.encode(digest)
        let amzDate = SigV4.amzDate(date)
        var headers: [(name: String, value: String)] = [
            ("Content-Type", blob.contentType),
            ("x-amz-content-sha256", payloadHash),
            ("x-amz-date", amzDate),
            // An object checksum S3 verifies and stores with the object: Object Lock buckets refuse
            // a PutObject without one (or Content-MD5). The algorithm header is what the SDKs send
            // with it (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html).
            ("x-amz-checksum-sha256", Data(digest).base64EncodedString()),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
        ]
        if let encoding = blob.contentEncoding { headers.append(("Content-Encoding", encoding)) }
        if blob.createOnly { headers.append(("If-None-Match", "*")) }
        if let token = credentials.sessionToken { headers.append(("x-amz-security-token", token)) }
        for (name, value) in blob.metadata.sorted(by: { $0.key < $1.key }) {
            headers.append(("x-amz-meta-" + Self.headerSafe(name.lowercased(), isValue: false), Self.headerSafe(value, isValue: true)))
        }
        // Host is signed; the transport sends it (and Content-Length) from the URL and body.
        let signature = SigV4.sign(
            method: "PUT", canonicalURI: location.path(objectKey: key),
            headers: headers + [("Host", location.host)], payloadHash: payloadHash,
            credentials: credentials, region: location.region, amzDate: amzDate)
        headers.append(("Authorization", signature.authorization))
        return (StoreHTTPRequest(method: "PUT", url: location.url(objectKey: key), headers: headers, body: blob.bytes), signature)
    }

    /// 5xx, 408, 429, plus S3's transient 4xx: `ConditionalRequestConflict` (409) and `RequestTimeout` (400).
    static func isRetryable(_ response: StoreHTTPResponse) -> Bool {
        if StoreHTTPClient.isRetryable(response) { return true }
        switch (response.status, errorDetail(response).code) {
        case (409, "ConditionalRequestConflict"?), (400, "RequestTimeout"?): return true
        default: return false
        }
    }

    /// `<Code>` and `<Message>` (at most 200 characters) of S3's XML error body.
    static func errorDetail(_ response: StoreHTTPResponse) -> (code: String?, message: String?) {
        let body = String(decoding: response.body.prefix(16_384), as: UTF8.self)
        func element(_ name: String) -> String? {
            guard let start = body.range(of: "<\(name)>"),
                let end = body.range(of: "</\(name)>", range: start.upperBound..<body.endIndex)
            else { return nil }
            let text = body[start.upperBound..<end.lowerBound].trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : String(text.prefix(200))
        }
        return (element("Code"), element("Message"))
    }

    /// A metadata name or value as S3 can store it (see the type's documentation).
    static func headerSafe(_ text: String, isValue: Bool) -> String {
        let bytes = Array(text.utf8)
        var out = ""
        for (index, byte) in bytes.enumerated() {
            let edgeSpace = byte == UInt8(ascii: " ") && (!isValue || index == 0 || index == bytes.count - 1)
            let separator = !isValue && "()<>@,;:\\\"/[]?={}".utf8.contains(byte)
            if byte < 0x20 || byte > 0x7E || byte == UInt8(ascii: "%") || edgeSpace || separator {
                out += percentEscape(byte)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        return out
    }
}

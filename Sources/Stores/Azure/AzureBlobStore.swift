import Crypto
import Foundation
import PersistorCore

/// Writes block blobs to Azure Blob Storage (`az://account/container/prefix`).
///
/// A body up to `singlePutLimit` bytes goes as one Put Blob; a larger one as Put Block requests
/// (in order, one at a time) and a Put Block List that commits them with the content headers and
/// metadata. Every body carries `Content-MD5`, so the service rejects bytes damaged on the way.
/// Create-only writes send `If-None-Match: *`; the service's 409 `BlobAlreadyExists` means
/// `.alreadyExists`. Error codes come from `x-ms-error-code`.
///
/// Metadata names must be C# identifiers made of ASCII letters, digits and `_` (not starting with
/// a digit), unique regardless of case; a blob with another name is refused (not retryable).
/// Metadata values travel as header values: bytes outside printable ASCII, `%`, and a leading or
/// trailing space are percent-encoded (UTF-8, `%XX`), so percent-decoding gives back the value.
package struct AzureBlobStore: BlobWriter {
    package var name: String { location.name }
    package let location: AzureStoreLocation
    let access: AzureAccess
    let client: StoreHTTPClient
    let now: @Sendable () -> Date

    /// The service version every request pins.
    static let version = "2025-11-05"

    /// Opens the store a URL names, with the endpoint and credentials the environment gives
    /// (`AzureAccess`). Nothing is sent until the first put or probe.
    package init(
        url: String, environment: [String: String], policy: StoreRetryPolicy = StoreRetryPolicy(),
        transport: any StoreHTTPTransport
    ) throws(BlobStoreError) {
        do {
            location = try AzureStoreLocation(url)
            client = StoreHTTPClient(store: location.name, transport: transport, policy: policy)
            access = try AzureAccess.resolve(account: location.account, environment: environment, client: client)
        } catch {
            throw BlobStoreError(
                store: url.split(separator: "?").first.map(String.init) ?? url, key: nil,
                message: error.description, retryable: false)
        }
        now = Date.init
    }

    init(location: AzureStoreLocation, access: AzureAccess, client: StoreHTTPClient, now: @escaping @Sendable () -> Date) {
        self.location = location
        self.access = access
        self.client = client
        self.now = now
    }

    package func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        let metadata = try metadataHeaders(blob)
        let response: StoreHTTPResponse
        if blob.bytes.count <= location.singlePutLimit {
            response = try await send(key: blob.key) { () async throws(BlobStoreError) -> StoreHTTPRequest in
                try await putBlobRequest(blob, metadata: metadata)
            }
        } else {
            let blocks = Self.blocks(count: blob.bytes.count, size: location.blockSize)
            for block in blocks {
                let answer = try await send(key: blob.key) { () async throws(BlobStoreError) -> StoreHTTPRequest in
                    try await putBlockRequest(key: blob.key, id: block.id, bytes: blob.bytes[block.range])
                }
                guard answer.status == 201 else { throw failure(blob.key, answer) }
            }
            response = try await send(key: blob.key) { () async throws(BlobStoreError) -> StoreHTTPRequest in
                try await putBlockListRequest(blob, blockIDs: blocks.map(\.id), metadata: metadata)
            }
        }
        if response.status == 201 { return .created }
        if blob.createOnly && response.status == 409 && Self.errorCode(response) == "BlobAlreadyExists" { return .alreadyExists }
        throw failure(blob.key, response)
    }

    // MARK: Requests

    /// Put Blob (BlockBlob) with the content headers, metadata and, create-only, `If-None-Match: *`.
    func putBlobRequest(_ blob: Blob, metadata: [(name: String, value: String)]) async throws(BlobStoreError) -> StoreHTTPRequest {
        var headers: [(name: String, value: String)] = [("x-ms-blob-type", "BlockBlob"), ("Content-Type", blob.contentType)]
        if let encoding = blob.contentEncoding { headers.append(("Content-Encoding", encoding)) }
        headers.append(("Content-MD5", Self.md5(blob.bytes)))
        headers += metadata
        if blob.createOnly { headers.append(("If-None-Match", "*")) }
        return try await request(key: blob.key, query: nil, headers: headers, body: blob.bytes)
    }

    /// Put Block: one block of a larger blob, staged under `id` (base64) until the block list commits it.
    func putBlockRequest(key: String, id: String, bytes: ArraySlice<UInt8>) async throws(BlobStoreError) -> StoreHTTPRequest {
        let body = Array(bytes)
        return try await request(
            key: key, query: "comp=block&blockid=" + Self.percentEncoded(id),
            headers: [("Content-MD5", Self.md5(body))], body: body)
    }

    /// Put Block List: commits the staged blocks in order, with the blob's content headers as
    /// `x-ms-blob-content-*`, its metadata and, create-only, `If-None-Match: *`.
    func putBlockListRequest(
        _ blob: Blob, blockIDs: [String], metadata: [(name: String, value: String)]
    ) async throws(BlobStoreError) -> StoreHTTPRequest {
        let body = Array(
            ("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
                + blockIDs.map { "<Latest>\($0)</Latest>" }.joined() + "</BlockList>").utf8)
        var headers: [(name: String, value: String)] = [
            ("Content-Type", "application/xml; charset=utf-8"),
            ("x-ms-blob-content-type", blob.contentType),
        ]
        if let encoding = blob.contentEncoding { headers.append(("x-ms-blob-content-encoding", encoding)) }
        headers += metadata
        if blob.createOnly { headers.append(("If-None-Match", "*")) }
        return try await request(key: blob.key, query: "comp=blocklist", headers: headers, body: body)
    }

    /// A request to the blob at `key` (below the prefix), with `x-ms-version`, `x-ms-date` and
    /// `Content-Length` added and the store's authorization applied.
    func request(
        key: String, query: String?, headers: [(name: String, value: String)], body: [UInt8]
    ) async throws(BlobStoreError) -> StoreHTTPRequest {
        var query = query
        if case .sas(let token) = access.authorization { query = query.map { $0 + "&" + token } ?? token }
        let text = access.endpoint + "/" + location.container + "/" + Self.encodedPath(blobName(key)) + (query.map { "?" + $0 } ?? "")
        guard let url = URL(string: text) else {
            throw BlobStoreError(store: name, key: key, message: "the blob URL is not valid", retryable: false)
        }
        var headers = headers
        headers += [("Content-Length", String(body.count)), ("x-ms-date", Self.httpDate(now())), ("x-ms-version", Self.version)]
        switch access.authorization {
        case .sharedKey(let key):
            headers.append(("Authorization", key.authorization(method: "PUT", url: url, headers: headers)))
        case .sas:
            break
        case .bearer(let tokens):
            headers.append(("Authorization", "Bearer " + (try await tokens.get())))
        }
        return StoreHTTPRequest(method: "PUT", url: url, headers: headers, body: body)
    }

    /// The blob's name in the container: the prefix and the key joined by one `/`.
    func blobName(_ key: String) -> String {
        let key = key.drop { $0 == "/" }
        return location.prefix.isEmpty ? String(key) : location.prefix + "/" + key
    }

    // MARK: Helpers

    private func send(
        key: String, _ makeRequest: () async throws(BlobStoreError) -> StoreHTTPRequest
    ) async throws(BlobStoreError) -> StoreHTTPResponse {
        try await client.send(key: key, errorCode: Self.errorCode, makeRequest)
    }

    private func failure(_ key: String, _ response: StoreHTTPResponse) -> BlobStoreError {
        client.failure(key: key, response: response, code: Self.errorCode(response))
    }

    @Sendable static func errorCode(_ response: StoreHTTPResponse) -> String? { response.header("x-ms-error-code") }

    /// The blob's metadata as `x-ms-meta-*` headers (names checked, values encoded; see the type's doc).
    func metadataHeaders(_ blob: Blob) throws(BlobStoreError) -> [(name: String, value: String)] {
        var seen: Set<String> = []
        var headers: [(name: String, value: String)] = []
        for (name, value) in blob.metadata.sorted(by: { $0.key < $1.key }) {
            guard Self.isMetadataName(name), seen.insert(name.lowercased()).inserted else {
                throw BlobStoreError(
                    store: self.name, key: blob.key,
                    message: "metadata name '\(name)' is not allowed: Azure takes ASCII C# identifiers, unique regardless of case",
                    retryable: false)
            }
            headers.append(("x-ms-meta-" + name, Self.encodedMetadataValue(value)))
        }
        return headers
    }

    static func isMetadataName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.utf8.allSatisfy { byte in
            byte == UInt8(ascii: "_") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
        }
    }

    static func encodedMetadataValue(_ value: String) -> String {
        let bytes = Array(value.utf8)
        var out = ""
        for (index, byte) in bytes.enumerated() {
            let edgeSpace = byte == 0x20 && (index == 0 || index == bytes.count - 1)
            if byte < 0x20 || byte >= 0x7F || byte == UInt8(ascii: "%") || edgeSpace {
                out += "%" + hex(byte)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            }
        }
        return out
    }

    /// A blob name as a URL path: bytes outside the unreserved set and `/` percent-encoded, and
    /// the dots of a `.` or `..` segment too, so no client normalizes them away.
    static func encodedPath(_ name: String) -> String {
        name.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            if segment == "." || segment == ".." { return String(repeating: "%2E", count: segment.count) }
            return Self.percentEncoded(String(segment))
        }.joined(separator: "/")
    }

    /// `text` with every UTF-8 byte outside RFC 3986's unreserved characters percent-encoded, for a
    /// query value or a path segment.
    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? text
    }

    private static let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    private static func hex(_ byte: UInt8) -> String {
        let digits = Array("0123456789ABCDEF".utf8)
        return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]], as: UTF8.self)
    }

    /// One block of a block-list upload: its base64 id and the body range it carries.
    struct Block: Equatable {
        var id: String
        var range: Range<Int>
    }

    /// Splits `count` bytes into blocks of `size` (the last one shorter). Ids are base64 of
    /// `{upload}-{index}` with a random upload part and a zero-padded index: equal lengths, as the
    /// service requires, and no mixing with blocks a concurrent upload of the same blob staged.
    static func blocks(count: Int, size: Int) -> [Block] {
        let upload = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let paddedUpload = String(repeating: "0", count: 16 - upload.count) + upload
        return stride(from: 0, to: count, by: size).enumerated().map { index, start in
            let number = String(index)
            let id = paddedUpload + "-" + String(repeating: "0", count: 6 - number.count) + number
            return Block(id: Data(id.utf8).base64EncodedString(), range: start..<min(start + size, count))
        }
    }

    static func md5(_ bytes: [UInt8]) -> String {
        Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
    }

    /// RFC 1123 date in GMT, e.g. `Thu, 26 Nov 2026 12:00:00 GMT`.
    static func httpDate(_ date: Date) -> String {
        UTCTime(seconds: Int64(date.timeIntervalSince1970.rounded(.down))).httpDate
    }
}

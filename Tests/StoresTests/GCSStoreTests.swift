import Foundation
import PersistorCore
import PersistorTestSupport
import PersistorTesting
import Testing

@testable import PersistorStores

/// Records every request and answers from `answers` (then 200 `{}`); for checking what the store sends.
private func recording(_ answers: [StoreHTTPResponse] = []) -> ScriptedTransport {
    ScriptedTransport(answers: answers, afterScript: StoreHTTPResponse(status: 200, body: Array("{}".utf8)))
}

private let fast = StoreRetryPolicy(
    attemptTimeout: .seconds(10), totalTimeout: .seconds(30), maxAttempts: 2,
    initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(5))
private let emulator = ["STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443"]

private func json(_ status: Int, _ body: String) -> StoreHTTPResponse {
    StoreHTTPResponse(status: status, headers: ["content-type": "application/json"], body: Array(body.utf8))
}

/// The parts of a `multipart/related` body: each part's headers and content.
private func parts(of body: [UInt8], boundary: String) throws -> [(headers: [String], content: [UInt8])] {
    let delimiter = Array("--\(boundary)".utf8)
    var chunks: [[UInt8]] = []
    var start = 0, index = 0
    while index + delimiter.count <= body.count {
        if Array(body[index..<index + delimiter.count]) == delimiter {
            chunks.append(Array(body[start..<index]))
            index += delimiter.count
            start = index
        } else {
            index += 1
        }
    }
    chunks.append(Array(body[start...]))
    guard chunks.first == [], chunks.last == Array("--\r\n".utf8) else {
        throw TestFailure("body does not start with a delimiter and end with the close delimiter")
    }
    return try chunks.dropFirst().dropLast().map { chunk in
        let text = chunk
        guard text.starts(with: Array("\r\n".utf8)), text.suffix(2) == [0x0D, 0x0A] else { throw TestFailure("a part is not framed by CRLF") }
        let inner = Array(text.dropFirst(2).dropLast(2))
        let separator = Array("\r\n\r\n".utf8)
        guard let split = (0...(inner.count - separator.count)).first(where: { Array(inner[$0..<$0 + separator.count]) == separator }) else {
            throw TestFailure("a part has no blank line after its headers")
        }
        let headers = String(decoding: inner[..<split], as: UTF8.self).components(separatedBy: "\r\n")
        return (headers, Array(inner[(split + separator.count)...]))
    }
}

@Suite struct GCSLocationTests {
    @Test(arguments: [
        ("gs://bkt/archive", "bkt", "archive"),
        ("gs://bkt", "bkt", ""),
        ("gs://bkt/", "bkt", ""),
        ("gs://my.bucket_1-x/a/b/c//", "my.bucket_1-x", "a/b/c"),
        ("gs://bkt/é/raw", "bkt", "é/raw"),
    ])
    func parsesBucketAndPrefix(url: String, bucket: String, prefix: String) throws {
        let location = try GCSLocation(parsing: url)
        #expect(location.bucket == bucket)
        #expect(location.prefix == prefix)
        #expect(location.endpoint == nil)
        #expect(location.objectName(for: "k/x.gz") == (prefix.isEmpty ? "k/x.gz" : prefix + "/k/x.gz"))
    }

    @Test func readsTheEndpointQuery() throws {
        let location = try GCSLocation(parsing: "gs://bkt/p?endpoint=https://storage-xyz.p.googleapis.com/")
        #expect(location.endpoint?.absoluteString == "https://storage-xyz.p.googleapis.com")
        #expect(location.name == "gs://bkt/p?endpoint=https://storage-xyz.p.googleapis.com")
        let encoded = try GCSLocation(parsing: "gs://bkt?endpoint=http%3A%2F%2F127.0.0.1%3A8080")
        #expect(encoded.endpoint?.absoluteString == "http://127.0.0.1:8080")
        #expect(encoded.prefix == "")
    }

    @Test(arguments: [
        ("gs://", "bucket name"),
        ("gs:///p", "bucket name"),
        ("gs://Upper/p", "bucket name"),
        ("gs://ab/p", "bucket name"),
        ("gs://-bkt/p", "bucket name"),
        ("gs://bk%74/p", "bucket name"),
        ("gs://bkt//p", "empty path segment"),
        ("gs://bkt/a//b", "empty path segment"),
        ("gs://bkt/p#x", "fragment"),
        ("gs://bkt/p?region=eu", "unknown query parameter 'region'"),
        ("gs://bkt/p?endpoint=https://a.example&endpoint=https://b.example", "more than once"),
        ("gs://bkt/p?endpoint=", "needs a value"),
        ("gs://bkt/p?endpoint=ftp://host", "not an endpoint"),
        ("gs://bkt/p?endpoint=https://host/storage", "not an endpoint"),
        ("gs://bkt/p?endpoint=https://user@host", "not an endpoint"),
    ])
    func refusesBadURLsClearly(url: String, cause: String) {
        do {
            _ = try GCSLocation(parsing: url)
            Issue.record("\(url) was accepted")
        } catch {
            #expect(error.message.contains(cause), "\(url): \(error.message)")
            #expect(error.message.hasPrefix("invalid gs:// URL"))
            #expect(!error.retryable)
        }
    }

    @Test func theFactoryOpensGSURLsAndKeepsRefusingUnknownSchemes() throws {
        let store = try StoreFactory.open("gs://bkt/archive/", environment: emulator, transport: recording())
        #expect(store.name == "gs://bkt/archive")
        #expect(throws: BlobStoreError.self) { try StoreFactory.open("gcs://bkt/p", environment: emulator, transport: recording()) }
    }

    @Test(arguments: ["127.0.0.1:4443", "http://127.0.0.1:4443", "http://127.0.0.1:4443/"])
    func emulatorHostWithOrWithoutScheme(value: String) async throws {
        let transport = recording()
        let store = try GCSStore(url: "gs://bkt/p", environment: ["STORAGE_EMULATOR_HOST": value], policy: fast, transport: transport)
        try await store.probe()
        #expect(transport.requests.map(\.url.absoluteString) == ["http://127.0.0.1:4443/upload/storage/v1/b/bkt/o?uploadType=multipart"])
    }
}

@Suite struct GCSUploadTests {
    @Test func createOnlyMultipartUploadLayout() async throws {
        let transport = recording()
        let store = try GCSStore(url: "gs://bkt/archive", environment: emulator, policy: fast, transport: transport)
        let bytes: [UInt8] = [0x1F, 0x8B, 0x08, 0x00, 0x0D, 0x0A, 0x2D, 0x2D, 0xFF, 0x00]
        let blob = Blob(
            key: "orders/2026/x.ndjson.gz", bytes: bytes, contentType: "application/x-ndjson", contentEncoding: "gzip",
            metadata: ["records": "2", "route": "café/ü \"q\""], createOnly: true)
        #expect(try await store.put(blob) == .created)

        let request = try #require(transport.requests.first)
        #expect(request.method == "POST")
        #expect(request.url.absoluteString == "http://127.0.0.1:4443/upload/storage/v1/b/bkt/o?uploadType=multipart&ifGenerationMatch=0")
        #expect(request.header("Content-Encoding") == nil, "an encoding header would be taken as transport compression")
        #expect(request.header("Authorization") == nil, "emulators get no credentials")
        let contentType = try #require(request.header("Content-Type"))
        #expect(contentType.hasPrefix("multipart/related; boundary="))
        let boundary = String(contentType.dropFirst("multipart/related; boundary=".count))
        #expect(boundary.count >= 30)

        let body = try parts(of: request.body, boundary: boundary)
        #expect(body.count == 2)
        #expect(body[0].headers == ["Content-Type: application/json; charset=UTF-8"])
        let resource = try #require(JSONSerialization.jsonObject(with: Data(body[0].content)) as? [String: Any])
        #expect(resource["name"] as? String == "archive/orders/2026/x.ndjson.gz")
        #expect(resource["contentType"] as? String == "application/x-ndjson")
        #expect(resource["contentEncoding"] as? String == "gzip")
        #expect(resource["metadata"] as? [String: String] == ["records": "2", "route": "café/ü \"q\""])
        // GCS refuses the upload when the bytes it got do not match; the value is google-crc32c's
        // (`base64(google_crc32c.value(bytes).to_bytes(4, "big"))`).
        #expect(resource["crc32c"] as? String == "WK8Wxw==")
        #expect(Set(resource.keys) == ["name", "contentType", "contentEncoding", "metadata", "crc32c"])
        #expect(body[1].headers == ["Content-Type: application/x-ndjson"])
        #expect(body[1].content == bytes, "the media part carries the bytes exactly")
    }

    @Test func overwritingUploadHasNoPreconditionAndNoEmptyFields() async throws {
        let transport = recording()
        let store = try GCSStore(url: "gs://bkt", environment: emulator, policy: fast, transport: transport)
        try await store.probe()
        let request = try #require(transport.requests.first)
        #expect(request.url.query == "uploadType=multipart")
        let boundary = String(try #require(request.header("Content-Type")).split(separator: "=").last!)
        let body = try parts(of: request.body, boundary: boundary)
        let resource = try #require(JSONSerialization.jsonObject(with: Data(body[0].content)) as? [String: Any])
        #expect(resource as NSDictionary == ["name": "_persistor/probe", "contentType": "text/plain", "crc32c": "bstgcA=="] as NSDictionary)
        #expect(body[1].content == Array("ok".utf8))
    }

    @Test func preconditionFailedIsAlreadyExistsForCreateOnlyOnly() async throws {
        let transport = recording([json(412, #"{"error":{"code":412,"message":"Precondition Failed","errors":[{"reason":"conditionNotMet"}]}}"#)])
        let store = try GCSStore(url: "gs://bkt/p", environment: emulator, policy: fast, transport: transport)
        #expect(try await store.put(Blob(key: "a.gz", bytes: [1], contentType: "application/gzip", createOnly: true)) == .alreadyExists)
    }

    @Test func errorsCarryTheReasonButNotTheBody() async throws {
        let transport = recording([
            json(
                403,
                #"{"error":{"code":403,"message":"secret-ish detail 12345","errors":[{"reason":"forbidden","message":"secret-ish detail 12345"}]}}"#),
            json(404, #"{"error":{"code":404,"message":"nope","status":"NOT_FOUND"}}"#),
        ])
        let store = try GCSStore(url: "gs://bkt/p", environment: emulator, policy: fast, transport: transport)
        for (status, code) in [(403, "forbidden"), (404, "NOT_FOUND")] {
            do {
                _ = try await store.put(Blob(key: "a.gz", bytes: [1], contentType: "application/gzip"))
                Issue.record("expected \(status)")
            } catch {
                #expect(error.status == status)
                #expect(error.code == code)
                #expect(error.store == "gs://bkt/p")
                #expect(error.key == "a.gz")
                #expect(!error.retryable)
                #expect(!error.description.contains("12345"))
            }
        }
    }

    @Test(arguments: ["", "/a", "a//b", "a/", "a\nb"])
    func refusesKeysThatWouldNotJoinByOneSlash(key: String) async throws {
        let transport = recording()
        let store = try GCSStore(url: "gs://bkt/p", environment: emulator, policy: fast, transport: transport)
        await #expect(throws: BlobStoreError.self) { _ = try await store.put(Blob(key: key, bytes: [1], contentType: "text/plain")) }
        #expect(transport.requests.isEmpty)
    }
}

/// CRC-32C against RFC 3720 Appendix B.4 (its bytes are the CRC as sent, little-endian; the
/// values here are the CRC itself) and the usual "123456789" check value.
@Suite struct CRC32CTests {
    @Test(arguments: [
        ([UInt8](repeating: 0x00, count: 32), UInt32(0x8A91_36AA)),
        ([UInt8](repeating: 0xFF, count: 32), UInt32(0x62A8_AB43)),
        ((0..<32).map { UInt8($0) }, UInt32(0x46DD_794E)),
        ((0..<32).reversed().map { UInt8($0) }, UInt32(0x113F_DB5C)),
        // An iSCSI SCSI Read (10) command PDU.
        (
            [
                0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
                0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ], UInt32(0xD996_3A56)
        ),
        (Array("123456789".utf8), UInt32(0xE306_9283)),
        ([], UInt32(0)),
    ])
    func matchesRFC3720Vectors(bytes: [UInt8], crc: UInt32) {
        #expect(CRC32C.checksum(bytes) == crc)
    }

    /// Every length from 0 to 40 (whole 8-byte steps and every tail) against the bit-by-bit definition.
    @Test func eightBytesAStepAgreesWithTheBitwiseDefinition() {
        for count in 0...40 {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 151 &+ 7) }
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            #expect(CRC32C.checksum(bytes) == ~crc, "\(count) bytes")
        }
    }

    @Test func base64IsBigEndianAsTheJSONAPIWantsIt() {
        #expect(CRC32C.base64([UInt8](repeating: 0, count: 32)) == Data([0x8A, 0x91, 0x36, 0xAA]).base64EncodedString())
        #expect(CRC32C.base64(Array("hello".utf8)) == "mnG7TA==", "as fake-gcs-server computes it for the same bytes")
    }
}

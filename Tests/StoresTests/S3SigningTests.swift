import Foundation
import PersistorCore
import PersistorTestSupport
import PersistorTesting
import Testing

@testable import PersistorStores

/// A SigV4 vector from botocore's `S3SigV4Auth` (S3Fixtures.swift, made by Tests/tools/make_s3_fixtures.py).
struct SigV4Fixture: CustomTestStringConvertible, Sendable {
    let name: String
    let method: String
    let canonicalURI: String
    let query: [(String, String)]
    let headers: [(String, String)]
    let payloadHash: String
    let accessKeyID: String
    let secret: String
    let region: String
    let amzDate: String
    let canonicalRequest: String
    let stringToSign: String
    let authorization: String
    var testDescription: String { name }
}

/// A PutObject the store must build exactly as boto3 addresses it and botocore signs it.
struct S3PutFixture: CustomTestStringConvertible, Sendable {
    let name: String
    let storeURL: String
    let environment: [String: String]
    let key: String
    let body: String
    let contentType: String
    let contentEncoding: String?
    let metadata: [String: String]
    let createOnly: Bool
    let accessKeyID: String
    let secret: String
    let sessionToken: String?
    let date: Int
    let url: String
    let canonicalRequest: String
    let stringToSign: String
    let authorization: String
    var testDescription: String { name }
}

@Suite struct S3SigningTests {
    @Test(arguments: sigV4Fixtures)
    func signerMatchesBotocore(_ fixture: SigV4Fixture) {
        let signature = SigV4.sign(
            method: fixture.method, canonicalURI: fixture.canonicalURI,
            query: fixture.query.map { (name: $0.0, value: $0.1) },
            headers: fixture.headers.map { (name: $0.0, value: $0.1) }, payloadHash: fixture.payloadHash,
            credentials: S3Credentials(accessKeyID: fixture.accessKeyID, secretAccessKey: fixture.secret),
            region: fixture.region, amzDate: fixture.amzDate)
        #expect(signature.canonicalRequest == fixture.canonicalRequest)
        #expect(signature.stringToSign == fixture.stringToSign)
        #expect(signature.authorization == fixture.authorization)
    }

    @Test(arguments: s3PutFixtures)
    func putObjectMatchesBoto3AddressingAndBotocoreSignature(_ fixture: S3PutFixture) throws {
        let store = try S3Store(
            url: fixture.storeURL,
            environment: fixture.environment.merging([
                "AWS_ACCESS_KEY_ID": fixture.accessKeyID, "AWS_SECRET_ACCESS_KEY": fixture.secret,
            ]) { $1 }, policy: StoreRetryPolicy(), transport: ScriptedTransport.unused)
        let blob = Blob(
            key: fixture.key, bytes: Array(fixture.body.utf8), contentType: fixture.contentType,
            contentEncoding: fixture.contentEncoding, metadata: fixture.metadata, createOnly: fixture.createOnly)
        let credentials = S3Credentials(accessKeyID: fixture.accessKeyID, secretAccessKey: fixture.secret, sessionToken: fixture.sessionToken)
        let (request, signature) = store.request(
            for: blob, credentials: credentials,
            date: Date(timeIntervalSince1970: TimeInterval(fixture.date)))
        #expect(signature.canonicalRequest == fixture.canonicalRequest)
        #expect(signature.stringToSign == fixture.stringToSign)
        #expect(signature.authorization == fixture.authorization)
        // boto3 keeps an explicit default port in the URL; the Host header (signed above) never has it.
        #expect(
            request.url.absoluteString == fixture.url.replacingOccurrences(of: "https://minio.example.com:443/", with: "https://minio.example.com/"))
        #expect(request.method == "PUT")
        #expect(request.body == blob.bytes)
        #expect(request.header("Authorization") == fixture.authorization)
        #expect(request.header("Host") == nil, "the transport derives Host from the URL")
        // Every header sent except Authorization is signed (and so verified by S3).
        let signed = Set(fixture.authorization.split(separator: "SignedHeaders=")[1].prefix { $0 != "," }.split(separator: ";").map(String.init))
        let sent = Set(request.headers.map { $0.name.lowercased() }).subtracting(["authorization"])
        #expect(sent.union(["host"]) == signed)
    }

    @Test func eachAttemptIsSignedWithItsOwnDate() throws {
        let store = try S3Store(
            url: "s3://bkt/p", environment: ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"],
            policy: StoreRetryPolicy(), transport: ScriptedTransport.unused)
        let blob = Blob(key: "k", bytes: [1], contentType: "application/octet-stream")
        let keys = S3Credentials(accessKeyID: "AKID", secretAccessKey: "secret")
        let first = store.request(for: blob, credentials: keys, date: Date(timeIntervalSince1970: 1_800_000_000)).request
        let later = store.request(for: blob, credentials: keys, date: Date(timeIntervalSince1970: 1_800_000_001)).request
        #expect(first.header("x-amz-date") == "20270115T080000Z")
        #expect(later.header("x-amz-date") == "20270115T080001Z")
        #expect(first.header("Authorization") != later.header("Authorization"))
    }
}

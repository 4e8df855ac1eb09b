import Foundation
import PersistorCore
import PersistorTestSupport
import PersistorTesting
import Testing

@testable import PersistorStores

private let keys = ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"]

/// Store URL, endpoint, region and credential resolution; key and metadata encoding; error answers.
@Suite struct S3LocationTests {
    @Test func endpointAndAddressingFollowTheEnvironment() throws {
        let cases: [(url: String, env: [String: String], host: String, basePath: String, region: String, scheme: String)] = [
            ("s3://bkt/archive", [:], "bkt.s3.us-east-1.amazonaws.com", "", "us-east-1", "https"),
            ("s3://bkt/archive", ["AWS_DEFAULT_REGION": "eu-west-1"], "bkt.s3.eu-west-1.amazonaws.com", "", "eu-west-1", "https"),
            (
                "s3://bkt", ["AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-1"], "bkt.s3.ap-south-1.amazonaws.com", "", "ap-south-1",
                "https"
            ),
            ("s3://bkt", ["AWS_REGION": "cn-north-1"], "bkt.s3.cn-north-1.amazonaws.com.cn", "", "cn-north-1", "https"),
            ("s3://my.bucket/x", ["AWS_REGION": "us-west-2"], "s3.us-west-2.amazonaws.com", "/my.bucket", "us-west-2", "https"),
            ("s3://Legacy_Bucket/x", [:], "s3.us-east-1.amazonaws.com", "/Legacy_Bucket", "us-east-1", "https"),
            ("s3://bkt/x", ["AWS_ENDPOINT_URL": "http://127.0.0.1:9000"], "127.0.0.1:9000", "/bkt", "us-east-1", "http"),
            (
                "s3://bkt/x", ["AWS_ENDPOINT_URL_S3": "https://S3.Example.com:443/base/", "AWS_ENDPOINT_URL": "http://other"],
                "s3.example.com", "/base/bkt", "us-east-1", "https"
            ),
            (
                "s3://bkt/x", ["AWS_ENDPOINT_URL_S3": "", "AWS_ENDPOINT_URL": "http://[::1]:9000", "AWS_REGION": ""],
                "[::1]:9000", "/bkt", "us-east-1", "http"
            ),
        ]
        for c in cases {
            let location = try S3Location(url: c.url, environment: c.env)
            #expect(location.host == c.host, "\(c.url) \(c.env)")
            #expect(location.basePath == c.basePath, "\(c.url) \(c.env)")
            #expect(location.region == c.region, "\(c.url) \(c.env)")
            #expect(location.scheme == c.scheme, "\(c.url) \(c.env)")
        }
    }

    @Test func prefixJoinsKeysWithExactlyOneSlash() throws {
        let cases: [(url: String, name: String, key: String)] = [
            ("s3://bkt/archive", "s3://bkt/archive", "archive/a/b.gz"),
            ("s3://bkt/archive/", "s3://bkt/archive", "archive/a/b.gz"),
            ("s3://bkt//deep/er//", "s3://bkt/deep/er", "deep/er/a/b.gz"),
            ("s3://bkt", "s3://bkt", "a/b.gz"),
            ("s3://bkt/", "s3://bkt", "a/b.gz"),
        ]
        for c in cases {
            let location = try S3Location(url: c.url, environment: [:])
            #expect(location.storeName == c.name)
            #expect(location.objectKey("a/b.gz") == c.key)
        }
    }

    @Test(arguments: [
        ("s3:///prefix", [String: String](), "bucket name"),
        ("s3://bad bucket/p", [:], "bucket name"),
        ("s3://bkt/a//b", [:], "'//'"),
        ("s3://bkt", ["AWS_REGION": "EU West"], "region"),
        ("s3://bkt", ["AWS_ENDPOINT_URL_S3": "localhost:9000"], "AWS_ENDPOINT_URL_S3"),
        ("s3://bkt", ["AWS_ENDPOINT_URL": "ftp://host"], "AWS_ENDPOINT_URL"),
    ])
    func invalidURLsAndSettingsAreClearErrors(url: String, environment: [String: String], mention: String) {
        #expect {
            try StoreFactory.open(url, environment: environment.merging(keys) { $1 }, transport: ScriptedTransport.unused)
        } throws: { error in
            let error = error as! BlobStoreError
            return !error.retryable && error.description.contains(mention)
        }
    }

    @Test func keysAreEncodedOnceAndDotSegmentsSurviveTheHTTPClient() throws {
        let location = try S3Location(url: "s3://bkt/p", environment: ["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000"])
        let key = location.objectKey("a b/ü=1/100%/x~y+z/./../end")
        #expect(location.path(objectKey: key) == "/bkt/p/a%20b/%C3%BC%3D1/100%25/x~y%2Bz/%2E/%2E%2E/end")
        #expect(location.url(objectKey: key).absoluteString == "http://127.0.0.1:9000" + location.path(objectKey: key))
        #expect(location.url(objectKey: "p//a").path == "/bkt/p//a", "S3 keeps empty segments")
    }

    @Test func metadataIsPercentEncodedOnlyWhereHeadersCannotCarryIt() {
        #expect(S3Store.headerSafe("2026-11-26T19:00:00.123Z", isValue: true) == "2026-11-26T19:00:00.123Z")
        #expect(S3Store.headerSafe("projects/p/subscriptions/s", isValue: true) == "projects/p/subscriptions/s")
        #expect(S3Store.headerSafe("größe ✓", isValue: true) == "gr%C3%B6%C3%9Fe %E2%9C%93")
        #expect(S3Store.headerSafe(" 100% ", isValue: true) == "%20100%25%20")
        #expect(S3Store.headerSafe("a\tb\r\nc", isValue: true) == "a%09b%0D%0Ac")
        #expect(S3Store.headerSafe("first received:at é", isValue: false) == "first%20received%3Aat%20%C3%A9")
        #expect(
            Data(S3Store.headerSafe("größe ✓ %41", isValue: true).removingPercentEncoding!.utf8) == Data("größe ✓ %41".utf8),
            "any percent-decoder gives the value back")
    }

    @Test func credentialsComeFromTheEnvironmentElseIMDSUnlessDisabled() throws {
        let client = StoreHTTPClient(store: "s3://bkt", transport: ScriptedTransport.unused)
        guard
            case .fixed(let fixed) = try S3CredentialProvider.resolve(
                environment: ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"], client: client)
        else {
            Issue.record("environment keys must be used as they are")
            return
        }
        #expect(fixed == S3Credentials(accessKeyID: "AKID", secretAccessKey: "s", sessionToken: "t"))
        guard
            case .instanceMetadata = try S3CredentialProvider.resolve(
                environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:1/"], client: client)
        else {
            Issue.record("without keys, IMDS is used")
            return
        }
        for (environment, mention) in [
            (["AWS_EC2_METADATA_DISABLED": "TRUE"], "no AWS credentials"),
            (["AWS_ACCESS_KEY_ID": "AKID"], "AWS_SECRET_ACCESS_KEY is not"),
            (["AWS_SECRET_ACCESS_KEY": "s", "AWS_ACCESS_KEY_ID": ""], "AWS_ACCESS_KEY_ID is not"),
            (["AWS_EC2_METADATA_SERVICE_ENDPOINT": "169.254.169.254"], "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
        ] {
            do throws(BlobStoreError) {
                _ = try S3CredentialProvider.resolve(environment: environment, client: client)
                Issue.record("\(environment) must fail")
            } catch {
                #expect(error.description.contains(mention) && error.description.contains("s3://bkt"), "\(error)")
                #expect(!error.retryable)
            }
        }
    }

    @Test func errorAnswersGiveS3sCodeAndMessage() {
        let body = Array(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided.</Message><StringToSign>AWS4-HMAC-SHA256...</StringToSign></Error>
            """.utf8)
        let detail = S3Store.errorDetail(StoreHTTPResponse(status: 403, body: body))
        #expect(detail.code == "SignatureDoesNotMatch")
        #expect(detail.message == "The request signature we calculated does not match the signature you provided.")
        #expect(S3Store.errorDetail(StoreHTTPResponse(status: 503)).code == nil)
    }

    @Test func conflictingConditionalWritesAndRequestTimeoutsAreRetried() async throws {
        func answer(_ status: Int, _ code: String) -> StoreHTTPResponse {
            StoreHTTPResponse(status: status, body: Array("<Error><Code>\(code)</Code></Error>".utf8))
        }
        #expect(S3Store.isRetryable(answer(409, "ConditionalRequestConflict")))
        #expect(S3Store.isRetryable(answer(400, "RequestTimeout")))
        #expect(S3Store.isRetryable(answer(503, "SlowDown")))
        #expect(!S3Store.isRetryable(answer(409, "BucketAlreadyExists")))
        #expect(!S3Store.isRetryable(answer(412, "PreconditionFailed")))
        #expect(!S3Store.isRetryable(answer(403, "SignatureDoesNotMatch")))

        // Through the store: the conflict is retried, re-signed, and the final 412 means "already there".
        let transport = ScriptedTransport(answers: [answer(409, "ConditionalRequestConflict"), answer(412, "PreconditionFailed")])
        let policy = StoreRetryPolicy(
            attemptTimeout: .seconds(10), totalTimeout: .seconds(30), maxAttempts: 3,
            initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(1))
        let store = try S3Store(url: "s3://bkt/p", environment: keys, policy: policy, transport: transport)
        let outcome = try await store.put(Blob(key: "k.gz", bytes: [1, 2], contentType: "application/octet-stream", createOnly: true))
        #expect(outcome == .alreadyExists)
        #expect(transport.requests.count == 2)
        #expect(transport.requests.allSatisfy { $0.header("If-None-Match") == "*" })
    }
}

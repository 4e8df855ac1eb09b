import Foundation
import PersistorCore
import PersistorTestSupport
import Testing

@testable import PersistorStores

/// The store against moto with SigV4 verification on (moto checks signatures with botocore, from
/// the request it received), objects read back with boto3.
@Suite(.serialized) struct S3StorePeerTests {
    @Test func writesOddKeysCreateOnlyAndReportsAuthFailures() async throws {
        let port = try PersistorProcess.freePort()
        let bin = URL(fileURLWithPath: try testPython()).deletingLastPathComponent().path
        let moto = try PeerProcess(
            "moto", executable: bin + "/moto_server", arguments: ["-H", "127.0.0.1", "-p", String(port)],
            port: port, startupTimeout: 60)
        defer { moto.stop() }
        let keys = try runPythonTool("moto_bootstrap.py", [String(port)])
        let id = try #require(keys["accessKeyId"] as? String), secret = try #require(keys["secretAccessKey"] as? String)
        let endpoint = "http://127.0.0.1:\(port)"
        func store(secret: String, accessKeyID: String = id) throws -> any BlobWriter {
            try StoreFactory.open(
                "s3://bkt/pre fix",
                environment: [
                    "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secret,
                ], policy: StoreRetryPolicy(attemptTimeout: .seconds(10), totalTimeout: .seconds(20)))
        }
        let s3 = try store(secret: secret)
        #expect(s3.name == "s3://bkt/pre fix")
        try await s3.probe()

        let oddKeys = ["a b/ü=1/100%/x~y+z.json", "dt=2026-11-26/hour=19/k.gz", "dots/./../end", "double//slash", "*'()!$&,;:@[]"]
        for (index, key) in oddKeys.enumerated() {
            let blob = Blob(
                key: key, bytes: Array("body \(index)".utf8), contentType: "application/json",
                metadata: ["Route": "größe ✓", "id": " 100% "], createOnly: true)
            #expect(try await s3.put(blob) == .created, "\(key)")
            #expect(try await s3.put(blob) == .alreadyExists, "\(key): If-None-Match: * answered 412")
        }
        let overwritten = Blob(key: "plain.txt", bytes: Array("v1".utf8), contentType: "text/plain")
        #expect(try await s3.put(overwritten) == .created)
        #expect(
            try await s3.put(Blob(key: "plain.txt", bytes: Array("v2".utf8), contentType: "text/plain")) == .created,
            "without createOnly a write replaces the object")

        let output = try runPythonTool("s3_read.py", [endpoint, id, secret, "bkt"])
        var stored: [String: [String: Any]] = [:]
        for object in output["objects"] as? [[String: Any]] ?? [] { stored[object["key"] as? String ?? ""] = object }
        #expect(Set(stored.keys) == Set((oddKeys + ["plain.txt", "_persistor/probe"]).map { "pre fix/" + $0 }))
        for (index, key) in oddKeys.enumerated() {
            let object = try #require(stored["pre fix/" + key], "\(key)")
            #expect(Data(base64Encoded: object["bytesBase64"] as? String ?? "") == Data("body \(index)".utf8))
            let metadata = object["metadata"] as? [String: String] ?? [:]
            #expect(metadata == ["route": "gr%C3%B6%C3%9Fe %E2%9C%93", "id": "%20100%25%20"])
            #expect(metadata["route"]?.removingPercentEncoding == "größe ✓")
        }
        #expect(Data(base64Encoded: stored["pre fix/plain.txt"]?["bytesBase64"] as? String ?? "") == Data("v2".utf8))
        // SHA-256 of "v2", as `printf v2 | sha256sum | xxd -r -p | base64` gives it.
        #expect(stored["pre fix/plain.txt"]?["checksumSHA256"] as? String == "+wTctpcOTD0Yc95R/VpQ17tGszgxE2AmZcNQ7EC1+ZA=")

        // Object Lock buckets take a PutObject only with Content-MD5 or a checksum header.
        let locked = try StoreFactory.open(
            "s3://locked/p",
            environment: [
                "AWS_ENDPOINT_URL_S3": endpoint, "AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret,
            ], policy: StoreRetryPolicy(attemptTimeout: .seconds(10), totalTimeout: .seconds(20)))
        #expect(try await locked.put(Blob(key: "k.json", bytes: Array("{}".utf8), contentType: "application/json", createOnly: true)) == .created)

        for (wrong, code) in [
            (try store(secret: "wrong"), "SignatureDoesNotMatch"),
            (try store(secret: secret, accessKeyID: "AKIAUNKNOWN000000000"), "InvalidAccessKeyId"),
        ] {
            do {
                try await wrong.probe()
                Issue.record("\(code): the probe passed")
            } catch {
                #expect(error.status == 403 && error.code == code && !error.retryable, "\(error)")
                #expect(error.store == "s3://bkt/pre fix" && error.key == "pre fix/_persistor/probe")
                #expect(!error.description.contains(secret))
            }
        }
    }
}

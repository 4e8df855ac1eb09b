import Foundation
import PersistorTestSupport
import Testing

/// moto's S3 on a loopback port with SigV4 verification on (Tests/tools/moto_bootstrap.py): an
/// IAM user's keys, temporary keys of a role, and the bucket `bkt`.
final class MotoS3: @unchecked Sendable {
    let port: Int
    private(set) var peer: PeerProcess
    let accessKeyID: String
    let secretAccessKey: String
    /// A role's temporary keys: AccessKeyId, SecretAccessKey, Token, Expiration.
    let roleCredentials: [String: String]
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        port = try PersistorProcess.freePort()
        peer = try Self.start(port: port)
        let keys = try runPythonTool("moto_bootstrap.py", [String(port)])
        guard let id = keys["accessKeyId"] as? String, let secret = keys["secretAccessKey"] as? String,
            let role = keys["role"] as? [String: String]
        else { throw TestFailure("moto_bootstrap.py printed no keys") }
        accessKeyID = id
        secretAccessKey = secret
        roleCredentials = role
    }

    private static func start(port: Int) throws -> PeerProcess {
        let bin = URL(fileURLWithPath: try testPython()).deletingLastPathComponent().path
        return try PeerProcess(
            "moto", executable: bin + "/moto_server", arguments: ["-H", "127.0.0.1", "-p", String(port)],
            port: port, startupTimeout: 60)
    }

    /// SIGKILLs moto (all its state is lost).
    func kill() { peer.stop() }

    /// Starts moto again on the same port and bootstraps it; the seeded bootstrap gives the same keys.
    func restart() throws {
        peer = try Self.start(port: port)
        let keys = try runPythonTool("moto_bootstrap.py", [String(port)])
        guard keys["accessKeyId"] as? String == accessKeyID else { throw TestFailure("the restarted moto has other keys") }
    }

    /// The environment that points Persistor at this moto with the user's keys.
    func environment(secret: String? = nil, endpoint: String? = nil) -> [String: String] {
        [
            "AWS_ENDPOINT_URL_S3": endpoint ?? self.endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": accessKeyID,
            "AWS_SECRET_ACCESS_KEY": secret ?? secretAccessKey, "AWS_EC2_METADATA_DISABLED": "true",
        ]
    }

    /// Every object under `prefix`, read back with boto3 (Tests/tools/s3_read.py).
    func objects(prefix: String, bucket: String = "bkt") throws -> [String: S3Object] {
        let output = try runPythonTool("s3_read.py", [endpoint, accessKeyID, secretAccessKey, bucket, prefix])
        var objects: [String: S3Object] = [:]
        for entry in output["objects"] as? [[String: Any]] ?? [] {
            let object = S3Object(
                key: entry["key"] as? String ?? "",
                bytes: [UInt8](Data(base64Encoded: entry["bytesBase64"] as? String ?? "") ?? Data()),
                contentType: entry["contentType"] as? String,
                contentEncoding: entry["contentEncoding"] as? String,
                metadata: entry["metadata"] as? [String: String] ?? [:],
                checksumSHA256: entry["checksumSHA256"] as? String)
            objects[object.key] = object
        }
        return objects
    }
}

/// One object as boto3 reads it.
struct S3Object {
    let key: String
    let bytes: [UInt8]
    let contentType: String?
    let contentEncoding: String?
    let metadata: [String: String]
    /// The checksum S3 keeps with the object (base64), nil when it has none.
    let checksumSHA256: String?
}

/// Polls `/readyz` until it answers `status` (or `timeout` seconds pass); returns the last status.
@discardableResult
/// Posts one wrapped Pub/Sub delivery on a new connection; returns the answer.
func postPubSub(_ server: PersistorProcess, id: String, payload: [UInt8], timeout: Double = 20) throws -> RawHTTPResponse {
    try server.connect(timeout: timeout).perform(
        "POST", "/pubsub", headers: [("Content-Type", "application/json"), ("Connection", "close")],
        body: wrappedEnvelope(id: id, data: payload, attributes: ["route": "bestellungen-größe ✓"]))
}

/// The archive in S3 through Persistor: bytes, content headers and metadata as boto3 reads them back,
/// with moto verifying every signature.
@Suite(.serialized) struct S3StoreTests {
    @Test func archivesPubSubDeliveriesAsNDJSONAndRawObjects() throws {
        let moto = try MotoS3()
        let server = try PersistorProcess(environment: moto.environment(), storeURL: "s3://bkt/archive")
        #expect(waitForReadiness(server, 200) != nil, "the probe write passes: \(server.log)")
        var sent: [String: [UInt8]] = [:]
        for index in 0..<5 {
            let id = "m-\(index)"
            let payload = index == 4 ? [0x00, 0x9F, 0xFF] : Array("{\"order\":\(index),\"note\":\"é\"}".utf8)
            sent[id] = payload
            #expect(try postPubSub(server, id: id, payload: payload).status == 204)
        }
        let objects = try moto.objects(prefix: "archive/")
        let probe = try #require(objects["archive/_persistor/probe"], "\(objects.keys.sorted())")
        #expect(probe.bytes == Array("ok".utf8) && probe.contentType == "text/plain")
        var archived: [String: [UInt8]] = [:]
        for object in objects.values where object.key.hasSuffix(".ndjson.gz") {
            #expect(object.key.hasPrefix("archive/pubsub/") && !object.key.contains("//"), "\(object.key)")
            #expect(object.contentType == "application/x-ndjson")
            #expect(object.contentEncoding == "gzip")
            #expect(object.metadata["formatversion"] == "1", "S3 lower-cases metadata names: \(object.metadata)")
            #expect(object.metadata["firstreceivedat"]?.hasSuffix("Z") == true && object.metadata["lastreceivedat"] != nil)
            let lines = try systemGunzip(object.bytes).split(separator: 0x0A)
            #expect(object.metadata["records"] == String(lines.count))
            for line in lines {
                let record = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
                let id = try #require(record["id"] as? String)
                archived[id] = ArchiveReader.payload(record)
                #expect((record["attributes"] as? [String: String])?["route"] == "bestellungen-größe ✓")
            }
        }
        #expect(archived == sent)

        // Raw mode: a redelivery is acknowledged again and stored once (If-None-Match: * → 412).
        let raw = try PersistorProcess(config: "archive:\n  format: raw\n", environment: moto.environment(), storeURL: "s3://bkt/raw")
        let payload = Array("raw payload ✓".utf8)
        for _ in 0..<2 { #expect(try postPubSub(raw, id: "r-1", payload: payload).status == 204) }
        let rawObjects = try moto.objects(prefix: "raw/").filter { !$0.key.hasPrefix("raw/_persistor/") }
        #expect(rawObjects.count == 2, "one payload object and one sidecar: \(rawObjects.keys.sorted())")
        #expect(rawObjects.keys.allSatisfy { $0.hasPrefix("raw/pubsub/2021/02/26") }, "the path comes from the publish time")
        let gz = try #require(rawObjects.values.first { $0.key.contains("/r-1.") && $0.key.hasSuffix(".gz") })
        #expect(try systemGunzip(gz.bytes) == payload)
        #expect(gz.contentType == "application/octet-stream" && gz.contentEncoding == "gzip")
        #expect(gz.metadata == ["id": "r-1", "source": "pubsub", "route": "pubsub", "formatversion": "1"])
        let sidecarObject = try #require(rawObjects.values.first { $0.key.contains("/r-1.") && $0.key.hasSuffix(".json") })
        #expect(sidecarObject.contentType == "application/json")
        let sidecar = try #require(try JSONSerialization.jsonObject(with: Data(sidecarObject.bytes)) as? [String: Any])
        #expect(sidecar["id"] as? String == "r-1" && sidecar["formatVersion"] as? String == "1")
        #expect(sidecar["eventTime"] as? String == "2021-02-26T19:13:55.749Z")
        #expect((sidecar["attributes"] as? [String: String])?["route"] == "bestellungen-größe ✓")
        #expect(sidecar["data"] == nil && sidecar["dataBase64"] == nil, "the sidecar has no payload")
    }

    /// Object Lock buckets refuse a PutObject without Content-MD5 or an `x-amz-checksum-*` header
    /// (moto as S3: 400 InvalidRequest); each object keeps the SHA-256 it was sent with.
    @Test func objectLockBucketsTakeTheWritesAndKeepTheirSHA256Checksums() throws {
        let moto = try MotoS3()
        let server = try PersistorProcess(environment: moto.environment(), storeURL: "s3://locked/archive")
        #expect(waitForReadiness(server, 200) != nil, "the probe write passes: \(server.log)")
        for index in 0..<3 {
            #expect(try postPubSub(server, id: "l-\(index)", payload: Array("locked \(index)".utf8)).status == 204)
        }
        let objects = try moto.objects(prefix: "archive/", bucket: "locked")
        #expect(objects["archive/_persistor/probe"] != nil && objects.keys.contains { $0.hasSuffix(".ndjson.gz") }, "\(objects.keys.sorted())")
        for object in objects.values {
            let hex = Array(try sha256Hex(object.bytes).utf8)
            let digest = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
            #expect(object.checksumSHA256 == Data(digest).base64EncodedString(), "\(object.key)")
        }
    }

    @Test func aWrongSecretFailsReadinessAndDeliveriesAndNamesTheCause() throws {
        let moto = try MotoS3()
        let server = try PersistorProcess(environment: moto.environment(secret: "not-the-secret"), storeURL: "s3://bkt/archive")
        #expect(waitForReadiness(server, 503) != nil)
        let answer = try postPubSub(server, id: "w-1", payload: Array("x".utf8))
        #expect(answer.status == 503 && answer.header("Retry-After") != nil)
        #expect(waitForReadiness(server, 503) != nil)
        let log = server.log
        #expect(log.contains("s3://bkt/archive") && log.contains("SignatureDoesNotMatch"), "\(log)")
        #expect(!log.contains("not-the-secret") && !log.contains(moto.secretAccessKey), "no secrets in the log")
        #expect(try moto.objects(prefix: "").isEmpty, "nothing archived")
    }

    @Test func instanceMetadataCredentialsSignWithTheRolesTemporaryKeys() throws {
        let moto = try MotoS3()
        let role = moto.roleCredentials
        let imdsPort = try PersistorProcess.freePort()
        let imds = try PeerProcess(
            "imds", executable: try testPython(),
            arguments: [
                repositoryRoot + "/Tests/tools/imds_fake.py", String(imdsPort),
                role["AccessKeyId"]!, role["SecretAccessKey"]!, role["Token"]!, role["Expiration"]!,
            ], port: imdsPort)
        let server = try PersistorProcess(
            environment: [
                "AWS_ENDPOINT_URL_S3": moto.endpoint, "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:\(imdsPort)/", "AWS_EC2_METADATA_DISABLED": "",
            ], storeURL: "s3://bkt/imds")
        #expect(waitForReadiness(server, 200) != nil, "\(server.log)\n\(imds.log)")
        for index in 0..<3 {
            #expect(try postPubSub(server, id: "i-\(index)", payload: Array("via IMDS \(index)".utf8)).status == 204)
        }
        let objects = try moto.objects(prefix: "imds/")
        #expect(objects.keys.filter { $0.hasSuffix(".ndjson.gz") }.count >= 1)
        #expect(objects["imds/_persistor/probe"] != nil)
        let counts = try imdsStats(port: imdsPort)
        #expect(counts["credentials"] == 1, "the role's keys are fetched once and cached: \(counts)")
        #expect(!server.log.contains(role["SecretAccessKey"]!) && !server.log.contains(role["Token"]!))
    }

    @Test func missingCredentialsWithIMDSDisabledStopTheStartWithAClearError() throws {
        do {
            _ = try PersistorProcess(
                environment: ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_EC2_METADATA_DISABLED": "true"],
                storeURL: "s3://bkt/archive")
            Issue.record("persistor started without credentials")
        } catch {
            let message = "\(error)"
            #expect(
                message.contains("s3://bkt/archive") && message.contains("no AWS credentials")
                    && message.contains("AWS_ACCESS_KEY_ID"), "\(message)")
        }
    }

    private func imdsStats(port: Int) throws -> [String: Int] {
        let response = try RawHTTPClient(port: port).perform("GET", "/_stats", headers: [("Connection", "close")])
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Int])
    }
}

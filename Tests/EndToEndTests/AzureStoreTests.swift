import Foundation
import PersistorTestSupport
import Testing

/// The Azure Blob fake (Tests/tools/azblob_fake.py): SharedKey and SAS checked with the official
/// SDK's code, a fixed Bearer for managed identity, one container created with the SDK.
private final class AzureFake: @unchecked Sendable {
    static let account = "devstoreaccount1"
    static let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    let port: Int
    let container = "archive-c"
    let bearer: String?
    private(set) var peer: PeerProcess

    init(bearer: String? = nil) throws {
        port = try PersistorProcess.freePort()
        self.bearer = bearer
        peer = try Self.launch(port: port, bearer: bearer)
        try createContainer()
    }

    private static func launch(port: Int, bearer: String?) throws -> PeerProcess {
        var environment = ["AZ_FAKE_PORT": String(port)]
        if let bearer { environment["AZ_FAKE_BEARER"] = bearer }
        return try PeerProcess(
            "azblob-fake", executable: try testPython(),
            arguments: [repositoryRoot + "/Tests/tools/azblob_fake.py"], port: port, environment: environment)
    }

    private func createContainer() throws {
        _ = try runPythonTool("azure_read.py", ["create-container", connectionString, container])
    }

    /// SIGKILLs the fake; its blobs are gone.
    func kill() { peer.stop() }

    /// Starts a fresh fake on the same port and creates the container again.
    func restart() throws {
        peer = try Self.launch(port: port, bearer: bearer)
        try createContainer()
    }

    var endpoint: String { "http://127.0.0.1:\(port)/\(Self.account)" }
    var connectionString: String {
        "DefaultEndpointsProtocol=http;AccountName=\(Self.account);AccountKey=\(Self.key);BlobEndpoint=\(endpoint);"
    }
    var storeURL: String { "az://\(Self.account)/\(container)/archive" }

    /// Every blob under `archive/` except the readiness probe, read back with the SDK.
    func blobs() throws -> [StoredBlob] {
        let output = try runPythonTool("azure_read.py", ["read", connectionString, container, "archive/"])
        let items = try #require(output["blobs"] as? [[String: Any]])
        return try items.map { item in
            StoredBlob(
                name: try #require(item["name"] as? String),
                bytes: try #require(Data(base64Encoded: item["bytesBase64"] as? String ?? "")).map { $0 },
                contentType: item["contentType"] as? String, contentEncoding: item["contentEncoding"] as? String,
                contentMD5: item["contentMD5"] as? String,
                metadata: item["metadata"] as? [String: String] ?? [:],
                blockSizes: (item["committedBlocks"] as? [[String: Any]] ?? []).compactMap { $0["size"] as? Int })
        }.filter { $0.name != "archive/_persistor/probe" }
    }

    /// The fake's request log lines (`"PUT /path HTTP/1.1" 201 -`).
    var requestLog: [String] { peer.log.split(separator: "\n").map(String.init).filter { $0.contains("HTTP/1.1\"") } }
}

private struct StoredBlob {
    let name: String
    let bytes: [UInt8]
    let contentType: String?
    let contentEncoding: String?
    /// The MD5 the fake verified and kept (base64), nil when none was sent.
    let contentMD5: String?
    let metadata: [String: String]
    let blockSizes: [Int]
}

/// Base64 of the MD5 of `bytes`, computed by coreutils `md5sum`.
private func md5Base64(_ bytes: [UInt8]) throws -> String {
    let result = try runProcess(try requireTool("md5sum", install: "apt-get install -y coreutils"), ["-b", "-"], input: bytes)
    let hex = Array(String(decoding: result.stdout.prefix(32), as: UTF8.self).utf8)
    guard result.status == 0, hex.count == 32 else { throw TestFailure("md5sum failed: \(result.stderr)") }
    return Data(stride(from: 0, to: 32, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }).base64EncodedString()
}

/// The Azure variables of the test's own environment neutralized (empty counts as unset), plus `extra`.
private func azureEnvironment(_ extra: [String: String]) -> [String: String] {
    var environment: [String: String] = [:]
    for name in [
        "AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_SAS_TOKEN",
        "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZURE_CLIENT_ID",
    ] {
        environment[name] = ""
    }
    return environment.merging(extra) { $1 }
}

private let rawConfig = """
    archive:
      format: raw
      path: "{route}/{yyyy}/{MM}/{dd}"
    """

private func post(_ server: PersistorProcess, _ request: [UInt8]) throws -> RawHTTPResponse {
    let client = try server.connect()
    try client.send(request)
    return try client.readResponse()
}

/// Polls `condition` every 20 ms; false if it is still false after `timeout` seconds.
private func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() >= deadline { return false }
        usleep(20_000)
    }
    return true
}

@Suite(.serialized) struct AzureStoreTests {
    @Test func ndjsonBatchesAreStoredWithContentHeadersAndMetadata() throws {
        let fake = try AzureFake()
        let server = try PersistorProcess(
            environment: azureEnvironment(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString]),
            storeURL: fake.storeURL)
        #expect(waitForReadiness(server, 200, timeout: 10) != nil, "readyz after the probe; log:\n\(server.log)")
        var sent: [String: [UInt8]] = [:]
        for index in 0..<6 {
            let payload = index == 5 ? [0x00, 0xFF, 0x9F] : Array("order \(index) é".utf8)
            sent["az-\(index)"] = payload
            #expect(try post(server, pubsubPost(id: "az-\(index)", payload: payload)).status == 204)
        }
        let blobs = try fake.blobs()
        var received: [String: [UInt8]] = [:]
        var recordCount = 0
        for blob in blobs {
            #expect(blob.name.hasPrefix("archive/pubsub/") && blob.name.hasSuffix(".ndjson.gz"), "\(blob.name)")
            #expect(blob.contentType == "application/x-ndjson")
            #expect(blob.contentEncoding == "gzip")
            #expect(blob.contentMD5 == (try md5Base64(blob.bytes)), "Put Blob sends the body's Content-MD5, which the store checks")
            let lines = try systemGunzip(blob.bytes).split(separator: 0x0A)
            recordCount += lines.count
            #expect(blob.metadata["records"] == String(lines.count))
            #expect(blob.metadata["formatVersion"] == "1")
            #expect(blob.metadata["firstReceivedAt"]?.hasSuffix("Z") == true)
            #expect(blob.metadata["lastReceivedAt"].map { $0 >= blob.metadata["firstReceivedAt"]! } == true)
            for line in lines {
                let record = try #require(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
                received[record["id"] as? String ?? ""] = ArchiveReader.payload(record)
            }
        }
        #expect(recordCount == 6)
        #expect(received == sent)
        #expect(fake.requestLog.contains { $0.contains("PUT /devstoreaccount1/archive-c/archive/_persistor/probe ") && $0.contains("201") })
    }

    @Test func rawModeStoresARedeliveryOnceWithItsSidecar() throws {
        let fake = try AzureFake()
        let server = try PersistorProcess(
            config: rawConfig,
            environment: azureEnvironment(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString]),
            storeURL: fake.storeURL)
        let id = "msg é 42"
        let request = RawHTTPClient.request(
            "POST", "/pubsub", headers: [("Content-Type", "application/json")],
            body: wrappedEnvelope(id: id, data: Array("hello azure".utf8), attributes: ["k": "v"]))
        #expect(try post(server, request).status == 204)
        #expect(try post(server, request).status == 204)
        let blobs = try fake.blobs()
        let base = "archive/pubsub/2021/02/26/msg%20%C3%A9%2042"
        #expect(
            blobs.count == 2 && isRawObjectKey(blobs[0].name, base: base, ext: "gz")
                && isRawObjectKey(blobs[1].name, base: base, ext: "json"), "\(blobs.map(\.name))")
        guard blobs.count == 2 else { return }
        let (payload, sidecar) = (blobs[0], blobs[1])
        #expect(try systemGunzip(payload.bytes) == Array("hello azure".utf8))
        #expect(payload.contentType == "application/octet-stream" && payload.contentEncoding == "gzip")
        #expect(sidecar.contentType == "application/json" && sidecar.contentEncoding == nil)
        for blob in blobs {
            #expect(blob.metadata["id"] == "msg %C3%A9 42", "non-ASCII metadata is percent-encoded")
            #expect(blob.metadata["id"]?.removingPercentEncoding == id)
            #expect(blob.metadata["source"] == "pubsub" && blob.metadata["route"] == "pubsub" && blob.metadata["formatVersion"] == "1")
        }
        let fields = try #require(JSONSerialization.jsonObject(with: Data(sidecar.bytes)) as? [String: Any])
        #expect(fields["id"] as? String == id)
        #expect(fields["eventTime"] as? String == "2021-02-26T19:13:55.749Z")
        #expect(fields["attributes"] as? [String: String] == ["k": "v"])
        #expect(fields["formatVersion"] as? String == "1")
        #expect(fields["data"] == nil && fields["dataBase64"] == nil)
        let conflicts = fake.requestLog.filter { $0.contains("/archive/pubsub/2021/02/26/") && $0.contains("\" 409 ") }
        #expect(conflicts.count == 2, "the redelivery's two create-only puts met BlobAlreadyExists: \(fake.requestLog)")
    }

    @Test func largeBodiesGoAsBlocksAndABlockList() throws {
        let fake = try AzureFake()
        let server = try PersistorProcess(
            config: rawConfig,
            environment: azureEnvironment(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString]),
            storeURL: fake.storeURL + "?singlePutLimit=1024&blockSize=400")
        let payload = pseudoRandomBytes(count: 3000, seed: 7)
        let request = RawHTTPClient.request(
            "POST", "/pubsub", headers: [("Content-Type", "application/json")],
            body: wrappedEnvelope(id: "big-1", data: payload))
        #expect(try post(server, request).status == 204)
        #expect(try post(server, request).status == 204, "a redelivery is success")
        let blobs = try fake.blobs()
        let big = try #require(blobs.first { $0.name.contains("/big-1.") && $0.name.hasSuffix(".gz") })
        #expect(try systemGunzip(big.bytes) == payload)
        #expect(big.bytes.count > 1024)
        let expectedBlocks = Array(repeating: 400, count: big.bytes.count / 400) + (big.bytes.count % 400 == 0 ? [] : [big.bytes.count % 400])
        #expect(big.blockSizes == expectedBlocks, "committed blocks of 400 bytes")
        #expect(big.contentType == "application/octet-stream" && big.contentEncoding == "gzip")
        #expect(big.metadata["id"] == "big-1" && big.metadata["formatVersion"] == "1")
        let sidecar = try #require(blobs.first { $0.name.contains("/big-1.") && $0.name.hasSuffix(".json") })
        #expect(sidecar.blockSizes.isEmpty, "a small body is one Put Blob")
        let log = fake.requestLog
        #expect(log.filter { $0.contains("comp=blocklist") && $0.contains("\" 201 ") }.count == 1)
        #expect(log.filter { $0.contains("comp=blocklist") && $0.contains("\" 409 ") }.count == 1, "the redelivery's commit met BlobAlreadyExists")
    }

    @Test(arguments: ["connection string", "AZURE_STORAGE_SAS_TOKEN"])
    func aSASWorksWithoutAuthorizationHeader(via: String) throws {
        let fake = try AzureFake()
        let sas = try #require(runPythonTool("azure_read.py", ["container-sas", fake.connectionString, fake.container])["sas"] as? String)
        let environment =
            via == "connection string"
            ? ["AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=\(fake.endpoint);SharedAccessSignature=\(sas)"]
            : ["AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=\(fake.endpoint)", "AZURE_STORAGE_SAS_TOKEN": "?" + sas]
        let server = try PersistorProcess(environment: azureEnvironment(environment), storeURL: fake.storeURL)
        #expect(waitForReadiness(server, 200, timeout: 10) != nil, "log:\n\(server.log)")
        #expect(try post(server, pubsubPost(id: "sas-1", payload: Array("via sas".utf8))).status == 204)
        let blobs = try fake.blobs()
        #expect(blobs.count == 1)
        #expect(try blobs.first.map { String(decoding: try systemGunzip($0.bytes), as: UTF8.self) }?.contains("\"id\":\"sas-1\"") == true)
        #expect(!server.log.contains(sas), "the SAS never appears in logs")
    }

    @Test(arguments: ["IMDS", "App Service"])
    func managedIdentityTokensAuthorizeWrites(endpoint: String) throws {
        let identityPort = try PersistorProcess.freePort()
        let identity = try PeerProcess(
            "fake-identity", executable: try testPython(),
            arguments: [repositoryRoot + "/Tests/tools/fake_identity.py"], port: identityPort,
            environment: ["FAKE_ID_PORT": String(identityPort), "FAKE_ACCESS_TOKEN": "mi-token-\(identityPort)"])
        let fake = try AzureFake(bearer: "mi-token-\(identityPort)")
        var environment = ["AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=\(fake.endpoint)"]
        if endpoint == "IMDS" {
            environment["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = "http://127.0.0.1:\(identityPort)"
        } else {
            environment["IDENTITY_ENDPOINT"] = "http://127.0.0.1:\(identityPort)/msi/token"
            environment["IDENTITY_HEADER"] = "fake-identity-header"
        }
        let server = try PersistorProcess(environment: azureEnvironment(environment), storeURL: fake.storeURL)
        #expect(waitForReadiness(server, 200, timeout: 10) != nil, "log:\n\(server.log)\nidentity:\n\(identity.log)")
        for index in 0..<3 {
            #expect(try post(server, pubsubPost(id: "mi-\(index)", payload: Array("mi \(index)".utf8))).status == 204)
        }
        #expect(try fake.blobs().flatMap { try systemGunzip($0.bytes).split(separator: 0x0A) }.count == 3)
        let tokenPath =
            endpoint == "IMDS"
            ? "GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F"
            : "GET /msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com%2F"
        let fetches = identity.log.split(separator: "\n").filter { $0.contains(tokenPath) && $0.contains("\" 200 ") }
        #expect(fetches.count == 1, "one token, cached for every request: \(identity.log)")
        #expect(!server.log.contains("mi-token"), "the token never appears in logs")
        identity.stop()
    }

    @Test func aWrongKeyKeepsReadiness503AndStoresNothing() throws {
        let fake = try AzureFake()
        let wrongKey = Data((0..<64).map { UInt8($0) }).base64EncodedString()
        let connection = "AccountName=devstoreaccount1;AccountKey=\(wrongKey);BlobEndpoint=\(fake.endpoint)"
        let server = try PersistorProcess(
            environment: azureEnvironment(["AZURE_STORAGE_CONNECTION_STRING": connection]),
            storeURL: fake.storeURL)
        #expect(waitUntil(timeout: 5) { server.log.contains("AuthenticationFailed") }, "log:\n\(server.log)")
        #expect(readyStatus(server) == 503)
        let response = try post(server, pubsubPost(id: "never", payload: Array("x".utf8)))
        #expect(response.status == 503)
        #expect(response.header("Retry-After") != nil)
        let failure = server.log.split(separator: "\n").first { $0.contains("AuthenticationFailed") }.map(String.init) ?? ""
        #expect(failure.contains("az://devstoreaccount1/archive-c/archive"), "the log names the store: \(server.log)")
        #expect(failure.contains("status=403"))
        #expect(!server.log.contains(wrongKey), "the key never appears in logs")
        #expect(try fake.blobs().isEmpty)
        #expect(readyStatus(server) == 503)
    }

    @Test func anOutageAnswers503UntilTheStoreIsBackThenRecoversWithoutRestart() throws {
        let fake = try AzureFake()
        let server = try PersistorProcess(
            config: """
                storeRetry:
                  attemptTimeout: 500ms
                  totalTimeout: 1s
                  maxAttempts: 3
                  initialBackoff: 20ms
                  maxBackoff: 100ms
                """, environment: azureEnvironment(["AZURE_STORAGE_CONNECTION_STRING": fake.connectionString]), storeURL: fake.storeURL)
        #expect(waitForReadiness(server, 200, timeout: 10) != nil)

        // A sender posting steadily; each answer is recorded with the time its request was sent.
        struct Answer { let sentAt: Date; let id: String; let status: Int; let retryAfter: String? }
        let answers = LockedBox([Answer]())
        let stop = LockedBox(false)
        let port = server.port
        let sender = BackgroundThread {
            var sequence = 0
            while !stop.get() {
                sequence += 1
                let id = "outage-\(sequence)", sentAt = Date()
                if let client = try? RawHTTPClient(port: port, timeout: 5),
                    let response = try? client.perform(
                        "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                        body: wrappedEnvelope(id: id, data: Array("n \(sequence)".utf8)))
                {
                    answers.update { $0.append(Answer(sentAt: sentAt, id: id, status: response.status, retryAfter: response.header("Retry-After"))) }
                }
                usleep(50_000)
            }
        }
        defer { stop.set(true); try? sender.join() }
        #expect(waitUntil(timeout: 10) { answers.get().filter { $0.status == 204 }.count >= 5 }, "acks before the outage")

        fake.kill()
        let killedAt = Date()
        let notReady = waitForReadiness(server, 503, timeout: 5)
        #expect(notReady != nil, "readyz turns 503 while the store is down")
        usleep(2_000_000)
        let restartAt = Date()
        let during = answers.get().filter { $0.sentAt > killedAt && $0.sentAt < restartAt }
        let acksDuringOutage = during.filter { (200..<300).contains($0.status) }.count
        #expect(acksDuringOutage == 0, "no 2xx while the store is down")
        #expect(!during.isEmpty && during.allSatisfy { $0.status == 503 && $0.retryAfter != nil }, "503 + Retry-After")
        print("azure outage: \(during.count) deliveries sent while down, \(acksDuringOutage) acknowledged; readyz 503 after \(notReady ?? -1) s")

        try fake.restart()
        let recovered = waitForReadiness(server, 200, timeout: 10).map { _ in secondsSince(restartAt) }
        #expect(recovered != nil, "readyz back to 200 without restarting Persistor; log:\n\(server.log)")
        #expect((recovered ?? 99) < 8, "the probe runs every 2 s")
        print("azure outage: readyz 200 again \(recovered ?? -1) s after the fake's restart began (start-up and container creation included)")
        let after = Date()
        #expect(
            waitUntil(timeout: 10) { answers.get().filter { $0.sentAt > after && $0.status == 204 }.count >= 3 },
            "acks after the recovery")
        stop.set(true)
        try sender.join()
        let ackedAfter = Set(answers.get().filter { $0.sentAt > after && $0.status == 204 }.map(\.id))
        let stored = Set(
            try fake.blobs().flatMap { blob in
                try systemGunzip(blob.bytes).split(separator: 0x0A).compactMap {
                    (try JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])?["id"] as? String
                }
            })
        #expect(ackedAfter.isSubset(of: stored), "deliveries acknowledged after the recovery are in the store")
        #expect(server.isRunning)
    }
}

import Foundation
import PersistorTestSupport
import Testing

/// What is acknowledged stays stored, and what cannot be stored is said at once: raw keys that
/// name one message, names the store's clean-up never matches, segments within NAME_MAX, a
/// directory removed while serving, the free-space readiness check, and store paths that cannot
/// work stopping the start (docs/archive-format.md, docs/stores.md#local-filesystem).
@Suite(.serialized) struct ArchiveTrustTests {
    func post(
        _ server: PersistorProcess, _ path: String, _ body: [UInt8],
        headers: [(String, String)] = [("Content-Type", "application/json")]
    ) throws -> Int {
        try server.connect().perform("POST", path, headers: headers + [("Connection", "close")], body: body).status
    }

    func gunzipFile(_ store: TemporaryDirectory, _ path: String) throws -> String {
        String(decoding: try systemGunzip([UInt8](Data(contentsOf: URL(fileURLWithPath: store.path + "/" + path)))), as: UTF8.self)
    }

    static let raw = "archive:\n  format: raw\n  path: \"{route}\"\n"

    @Test func rawIDsThatLookLikeTemporaryFilesSurviveARestart() throws {
        let store = try TemporaryDirectory("persistor-e2e-store")
        defer { store.remove() }
        do {
            let server = try PersistorProcess(config: Self.raw, store: store)
            for id in [".x.tmp-1", ".probe.tmp-0"] {
                #expect(try post(server, "/pubsub", wrappedEnvelope(id: id, data: Array(id.utf8))) == 204)
            }
            server.terminate()
            #expect(try server.waitForExit(timeout: 15) == 0)
        }
        let stored = store.files()
        #expect(stored.count == 4, "\(stored)")
        #expect(stored.allSatisfy { !($0.split(separator: "/").last ?? "").hasPrefix(".") }, "\(stored)")
        // The next start removes leftover temporary files; acknowledged objects are not among them.
        let again = try PersistorProcess(config: Self.raw, store: store)
        #expect(store.files() == stored)
        #expect(readyStatus(again) == 200)
    }

    @Test func rawMessagesThatShareAnIDAreEachStored() throws {
        let server = try PersistorProcess(config: Self.raw)
        func cloudEvent(_ source: String, _ data: String) throws -> Int {
            let event = #"{"specversion":"1.0","id":"same","source":"\#(source)","type":"t","data":"\#(data)"}"#
            return try post(server, "/eventgrid", Array(event.utf8), headers: [("Content-Type", "application/cloudevents+json")])
        }
        func eventGrid(_ topic: String) throws -> Int {
            let event =
                #"[{"id":"same","topic":"\#(topic)","subject":"s","eventType":"t","eventTime":"2021-02-26T10:00:00Z","data":{},"dataVersion":"1"}]"#
            return try post(server, "/eventgrid", Array(event.utf8))
        }
        #expect(try cloudEvent("/a", "from a") == 200)
        #expect(try cloudEvent("/b", "from b") == 200)
        #expect(try eventGrid("/t1") == 200)
        #expect(try eventGrid("/t2") == 200)
        // Pub/Sub ids are unique per topic: two subscriptions may carry different messages under one id.
        for subscription in ["projects/p/subscriptions/s1", "projects/p/subscriptions/s2"] {
            #expect(try post(server, "/pubsub", wrappedEnvelope(id: "same", data: Array(subscription.utf8), subscription: subscription)) == 204)
        }
        // 43 CJK characters are 387 key-safe bytes: keySafe keeps the first 126.
        let cjk = String(repeating: "漢", count: 43)
        for suffix in ["1", "2"] {
            #expect(try post(server, "/pubsub", wrappedEnvelope(id: cjk + suffix, data: Array("cjk \(suffix)".utf8))) == 204)
        }
        // A redelivery (same message, later attempt) is stored once.
        #expect(try post(server, "/pubsub", wrappedEnvelope(id: cjk + "1", data: Array("cjk 1".utf8))) == 204)

        let payloads = try server.store.files().filter { $0.hasSuffix(".gz") }.map { try gunzipFile(server.store, $0) }
        #expect(payloads.count == 8, "\(server.store.files())")
        #expect(payloads.filter { $0.contains("from a") }.count == 1 && payloads.filter { $0.contains("from b") }.count == 1)
        #expect(payloads.filter { $0.contains(#""topic":"/t1""#) }.count == 1 && payloads.filter { $0.contains(#""topic":"/t2""#) }.count == 1)
        #expect(Set(payloads).isSuperset(of: ["projects/p/subscriptions/s1", "projects/p/subscriptions/s2", "cjk 1", "cjk 2"]))
        #expect(server.store.files().count == 16, "every payload has its sidecar")
    }

    @Test func aSegmentOfTwoLongAttributesIsStoredAndTheRouteStaysReady() throws {
        let server = try PersistorProcess(
            config: """
                routes:
                  - name: orders
                    path: /pubsub
                    kind: pubsub
                    delivery: unwrapped
                archive:
                  path: "{route}/{attr:a}{attr:b}"
                """)
        let long = String(repeating: "x", count: 200)
        #expect(try post(server, "/pubsub", Array("poison".utf8), headers: [("A", long), ("B", long)]) == 204)
        #expect(try post(server, "/pubsub", Array("neighbour".utf8), headers: [("A", "a"), ("B", "b")]) == 204)
        #expect(readyStatus(server) == 200)
        let records = try allRecords(server.store)
        #expect(Set(records.compactMap { $0.payload.map { String(decoding: $0, as: UTF8.self) } }) == ["poison", "neighbour"])
        #expect(records.allSatisfy { $0.object.split(separator: "/").allSatisfy { $0.utf8.count <= 255 } })
    }

    @Test func aDirectoryRemovedWhileServingIsCreatedAgain() throws {
        let server = try PersistorProcess()
        #expect(try post(server, "/pubsub", wrappedEnvelope(id: "1", data: Array("one".utf8))) == 204)
        let first = try #require(server.store.files().first)
        // The current hour's directory, then the whole route's tree.
        try FileManager.default.removeItem(atPath: server.store.path + "/" + (first as NSString).deletingLastPathComponent)
        #expect(try post(server, "/pubsub", wrappedEnvelope(id: "2", data: Array("two".utf8))) == 204)
        try FileManager.default.removeItem(atPath: server.store.path + "/pubsub")
        #expect(try post(server, "/pubsub", wrappedEnvelope(id: "3", data: Array("three".utf8))) == 204)
        #expect(readyStatus(server) == 200)
        #expect(try archivedIDCounts(server.store) == ["3": 1])
    }

    @Test func aStoreWithLessFreeSpaceThanABatchNeedsIsNotReady() throws {
        // No test disk is this full; a batch this large needs more than any has free.
        let server = try PersistorProcess(config: "archive:\n  batch:\n    maxBytes: 1000000GiB\n")
        #expect(waitForReadiness(server, 503, timeout: 10) != nil)
        let answer = try server.connect().perform("GET", "/readyz", headers: [("Connection", "close")])
        #expect(answer.status == 503)
        #expect(answer.bodyText.contains("free on the file system, below the"), "\(answer.bodyText)")
        #expect(!answer.bodyText.contains(server.store.path), "the answer does not reveal the store's path")
    }

    /// Runs `persistor serve --store <store>`, which must exit within `timeout` seconds; returns its
    /// status and output (or fails, killing it, if it keeps running).
    func serveMustExit(store: String, timeout: Double = 15) throws -> (status: Int32, log: String) {
        let work = try TemporaryDirectory("persistor-e2e-run")
        defer { work.remove() }
        let logPath = work.path + "/log"
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath)
        else { throw TestFailure("cannot create \(logPath)") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try PersistorProcess.locateBinary())
        process.arguments = ["serve", "--host", "127.0.0.1", "--port", String(try PersistorProcess.freePort()), "--store", store]
        process.environment = ProcessInfo.processInfo.environment.filter { $0.key != "PORT" && !$0.key.hasPrefix("PERSISTOR_") }
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TestFailure("persistor kept serving the store \(store) instead of refusing it; its log:\n\(output)")
        }
        return (process.terminationStatus, output)
    }

    @Test func aStorePathThatCannotHoldObjectsStopsTheStart() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = dir.path + "/store-file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("not a directory".utf8))
        for store in [file, file + "/below"] {
            let (status, log) = try serveMustExit(store: store)
            #expect(status != 0)
            #expect(log.contains(store) && log.contains("Not a directory"), "\(log)")
        }
        // Root is not stopped by permissions; an immutable directory (chattr +i) stops even root.
        let immutable = dir.path + "/immutable"
        try FileManager.default.createDirectory(atPath: immutable, withIntermediateDirectories: false)
        let chattr = try requireTool("chattr", install: "apt-get install -y e2fsprogs")
        let flagged = try runProcess(chattr, ["+i", immutable])
        try #require(
            flagged.status == 0,
            "chattr +i \(immutable) failed (\(flagged.stderr)): the test needs a temp directory on a file system with the immutable flag (ext4, xfs, btrfs)"
        )
        defer { _ = try? runProcess(chattr, ["-i", immutable]) }
        let (status, log) = try serveMustExit(store: immutable)
        #expect(status != 0)
        #expect(log.contains(immutable) && log.contains("cannot create a file") && log.contains("Operation not permitted"), "\(log)")
    }
}

import Foundation
import PersistorTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real Pub/Sub sender: Google's Pub/Sub emulator pushes to the release binary over loopback,
/// through wrapped and no-wrapper push subscriptions (with and without write-metadata). Messages are
/// published with the official google-cloud-pubsub client (Tests/tools/pubsub_emulator.py, through
/// PUBSUB_EMULATOR_HOST), some while Persistor is down after a SIGTERM, some in flight when it is
/// SIGKILLed and while it is down after that; once it is back, every published message must be in
/// the archive of every subscription, byte for byte (duplicates allowed: delivery is at least once).
///
/// The emulator (gcloud 528, cloud-pubsub-emulator 0.8.20), as observed on the wire and in its
/// PushLoop / HttpEndpointPusher classes:
/// - Retry timing: two push loops per subscription, each pushing one message at a time. A push that
///   fails (connection refused or reset, any answer but 102, 200, 201, 203 or 204) sets the
///   message's ack deadline to 1 s, so it is pushed again about 1 s later, for ever, without the
///   exponential push backoff of the real service (10 s up to 600 s); an idle loop polls every
///   100 ms. The connect timeout is the ack deadline; there is no read timeout. So a restarted
///   Persistor gets its backlog within a second or two, and the test's deadlines can be short.
/// - The wrapped envelope has no `orderingKey` and no `deliveryAttempt` (even for messages published
///   with an ordering key), and escapes `/` as `\/` (json-simple).
/// - No-wrapper pushes send `data` decoded as UTF-8 (`ByteString.toStringUtf8`), so bytes that are
///   not UTF-8 arrive as U+FFFD: only UTF-8 payloads go through the no-wrapper subscriptions (the
///   binary topic has just a wrapped one). They also carry `Content-type:
///   application/x-www-form-urlencoded` (Java's HttpURLConnection default), which Persistor keeps as
///   the attribute `content-type`.
/// - With write-metadata the ordering key comes as `x-goog-ordering-key`, not
///   `x-goog-pubsub-ordering-key`, so Persistor keeps it as an attribute instead of
///   `meta.orderingKey`; attributes are sent as headers with their names as published (Persistor
///   lower-cases them). Without write-metadata neither metadata nor attributes are sent.
@Suite("Pub/Sub emulator pushing to the binary", .serialized)
struct PubSubEmulatorTests {
    static let config = """
        server:
          shutdownGrace: 5s
        routes:
          - name: wrapped
            path: /push/wrapped
            kind: pubsub
            delivery: wrapped
          - name: plain
            path: /push/plain
            kind: pubsub
            delivery: unwrapped
          - name: meta
            path: /push/meta
            kind: pubsub
            delivery: auto
        """

    static let textTopic = "persistor-text"
    static let binaryTopic = "persistor-binary"
    /// Subscription → (topic, route, no wrapper, write metadata).
    static let subscriptions: [(name: String, topic: String, route: String, noWrapper: Bool, writeMetadata: Bool)] = [
        ("text-wrapped", textTopic, "wrapped", false, false),
        ("text-plain", textTopic, "plain", true, false),
        ("text-meta", textTopic, "meta", true, true),
        ("binary-wrapped", binaryTopic, "wrapped", false, false),
    ]
    /// What the emulator's HttpURLConnection adds to every no-wrapper push.
    static let emulatorContentType = "application/x-www-form-urlencoded"

    /// One published message and what the client answered.
    struct Message {
        let phase: String
        let topic: String
        let payload: [UInt8]
        let attributes: [String: String]
        let orderingKey: String
        var messageId = ""
    }

    // MARK: Messages

    /// UTF-8 payloads (they go to every subscription of the text topic, no-wrapper ones included),
    /// each unique through `token`, so the no-metadata route, whose ids Persistor assigns, can be
    /// matched by payload.
    static func textMessages(_ phase: String, count: Int) -> [Message] {
        (0..<count).map { index in
            let token = "\(phase)-\(index)"
            let kind: String
            let text: String
            var attributes: [String: String] = [:]
            var orderingKey = ""
            switch index % 6 {
            case 0:
                kind = "ascii"
                text = "plain ASCII text \(token)"
            case 1:
                kind = "utf8"
                text = "UTF-8 café ☕ 𝄞 Grüße ünïcødé \(token) — ok"
                orderingKey = "key-\(phase)"
            case 2:
                kind = "json"
                text = #"{"token":"\#(token)","n":\#(index),"nested":{"list":[1,2.5,true,null],"text":"a \"quoted\" \\ value / slash"}}"#
            case 3:
                kind = "controls"
                text = "line one \(token)\r\nline\ttwo\n\u{0}nul, \u{1F}unit separator, \u{7F} del\n"
            case 4:
                kind = "large"
                text = String(repeating: "large payload line \(token) 0123456789abcdef\n", count: 2_000)
            default:
                kind = "envelope-like"
                // Looks like a wrapped envelope; `delivery: unwrapped` and the metadata headers
                // (`auto`) must still keep it as the payload.
                text = #"{"message":{"data":"aGk=","messageId":"not-\#(token)","attributes":{"k":"v"}},"subscription":"projects/x/subscriptions/y"}"#
            }
            if index % 6 != 2 {
                // Header-safe names and values: the write-metadata subscription sends them as headers.
                attributes = ["kind": kind, "Seq": String(index), "phase": phase, "x-origin": "emulator-e2e"]
            }
            return Message(phase: phase, topic: textTopic, payload: Array(text.utf8), attributes: attributes, orderingKey: orderingKey)
        }
    }

    /// Payloads that are not UTF-8 (plus one that is), for the binary topic's wrapped subscription only.
    static func binaryMessages(_ phase: String, count: Int) -> [Message] {
        (0..<count).map { index in
            let token = Array("\(phase)-\(index)".utf8)
            let payload: [UInt8]
            var orderingKey = ""
            switch index % 4 {
            case 0:
                payload = (0...255).map { UInt8($0) } + token
                orderingKey = "binary-\(phase)"
            case 1:
                payload = pseudoRandomBytes(count: 150_000 + index, seed: UInt64(0xB1_0000 + index) &+ UInt64(phase.utf8.first ?? 0))
            case 2:
                // Truncated sequence, UTF-16 surrogate, overlong '/', beyond U+10FFFF, lone continuation.
                payload = [0xC3] + token + [0xED, 0xA0, 0x80, 0xC0, 0xAF, 0xF5, 0x80, 0x80, 0x80, 0x80, 0x00, 0xFF]
            default:
                payload = Array("valid UTF-8 text until the last byte \(phase)-\(index) ".utf8) + [0xFF]
            }
            let attributes = ["encoding": "binary", "note": "café ☕ \(phase)", "Seq": String(index)]
            return Message(phase: phase, topic: binaryTopic, payload: payload, attributes: attributes, orderingKey: orderingKey)
        }
    }

    // MARK: The emulator and the archive

    /// A free loopback port below the kernel's ephemeral range: the push endpoints name Persistor's
    /// port, and while it is down between restarts no other test's `freePort()` (a bind to port 0,
    /// which takes ephemeral ports only) can take it.
    static func portBelowEphemeralRange() throws -> Int {
        let range =
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) } ?? []
        let low = range.first ?? 32768
        guard low > 20_100 else { return try PersistorProcess.freePort() }
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<low)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { break }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port)).bigEndian
            address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            close(fd)
            if bound == 0 { return port }
        }
        return try PersistorProcess.freePort()
    }

    /// Runs pubsub_emulator.py against the emulator with `spec` written to a file.
    static func emulatorTool(
        _ command: String, _ spec: [String: Any], emulator: PubSubEmulator,
        scratch: TemporaryDirectory
    ) throws -> [String: Any] {
        let path = scratch.path + "/\(command)-\(UUID().uuidString.prefix(8)).json"
        try JSONSerialization.data(withJSONObject: spec).write(to: URL(fileURLWithPath: path))
        return try runPythonTool("pubsub_emulator.py", [command, path], environment: ["PUBSUB_EMULATOR_HOST": emulator.hostPort])
    }

    /// Publishes `messages` with the official client; returns them with their message ids.
    static func publish(_ messages: [Message], emulator: PubSubEmulator, scratch: TemporaryDirectory) throws -> [Message] {
        let spec: [String: Any] = [
            "project": emulator.project,
            "messages": messages.map { message -> [String: Any] in
                [
                    "topic": message.topic, "dataBase64": Data(message.payload).base64EncodedString(),
                    "attributes": message.attributes, "orderingKey": message.orderingKey,
                ]
            },
        ]
        let output = try emulatorTool("publish", spec, emulator: emulator, scratch: scratch)
        guard let ids = output["messageIds"] as? [String], ids.count == messages.count else {
            throw TestFailure("pubsub_emulator.py publish gave no message id per message: \(output)")
        }
        return zip(messages, ids).map { message, id in
            var published = message
            published.messageId = id
            return published
        }
    }

    /// The archive's records, each object decompressed (with the system gzip) once: objects are
    /// complete and immutable once they have their `.ndjson.gz` name.
    final class ArchiveWatcher {
        let store: TemporaryDirectory
        private var objects: [String: [ArchivedRecord]] = [:]

        init(_ store: TemporaryDirectory) { self.store = store }

        var objectCount: Int { ArchiveReader(store).objectPaths().count }

        func records() throws -> [ArchivedRecord] {
            for path in ArchiveReader(store).objectPaths() where objects[path] == nil {
                let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: store.path + "/" + path)))
                let text = try systemGunzip(bytes)
                guard text.last == 0x0A else { throw TestFailure("\(path) does not end with a newline") }
                objects[path] = try text.split(separator: 0x0A).map { line in
                    guard let fields = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                        throw TestFailure("a line of \(path) is not a JSON object")
                    }
                    return ArchivedRecord(object: path, line: String(decoding: line, as: UTF8.self), fields: fields)
                }
            }
            return objects.values.flatMap { $0 }
        }
    }

    /// Where a message must be found: one (route, subscription) per subscription of its topic.
    struct Expectation {
        let subscription: String
        let route: String
        let noWrapper: Bool
        let writeMetadata: Bool
        let message: Message
    }

    static func expectations(_ messages: [Message], project: String) -> [Expectation] {
        messages.flatMap { message in
            subscriptions.filter { $0.topic == message.topic }.map {
                Expectation(
                    subscription: "projects/\(project)/subscriptions/\($0.name)", route: $0.route,
                    noWrapper: $0.noWrapper, writeMetadata: $0.writeMetadata, message: message)
            }
        }
    }

    /// The records that deliver `expected`: by subscription and message id where the push carries
    /// them, by payload on the no-metadata route.
    static func matches(_ expected: Expectation, in records: [ArchivedRecord]) -> [ArchivedRecord] {
        records.filter { record in
            guard record.fields["route"] as? String == expected.route else { return false }
            if expected.noWrapper && !expected.writeMetadata { return record.payload == expected.message.payload }
            return record.id == expected.message.messageId && record.meta?["subscription"] as? String == expected.subscription
        }
    }

    static func missing(_ expected: [Expectation], in records: [ArchivedRecord]) -> [Expectation] {
        expected.filter { matches($0, in: records).isEmpty }
    }

    /// Polls the archive until every expectation is met or `timeout` seconds pass; returns what is
    /// still missing.
    static func waitForArchive(_ expected: [Expectation], watcher: ArchiveWatcher, timeout: Double) throws -> [Expectation] {
        let deadline = Date().addingTimeInterval(timeout)
        var left = expected
        while true {
            left = missing(left, in: try watcher.records())
            if left.isEmpty || Date() >= deadline { return left }
            usleep(100_000)
        }
    }

    /// How often the emulator logged a failed push to `endpoint` (it retries each about 1 s later).
    static func failedPushes(_ emulator: PubSubEmulator, to endpoint: String) -> Int {
        emulator.log.components(separatedBy: "Failed to push to endpoint '\(endpoint)'").count - 1
    }

    static func describe(_ expectations: [Expectation]) -> String {
        expectations.prefix(12).map { "\($0.subscription.split(separator: "/").last ?? "")/\($0.message.phase)/\($0.message.messageId)" }
            .joined(separator: ", ") + (expectations.count > 12 ? ", … (\(expectations.count) in all)" : "")
    }

    // MARK: The test

    @Test("the emulator's pushes through SIGTERM and SIGKILL restarts: every published message archived byte for byte, per subscription")
    func emulatorPushesSurviveRestarts() throws {
        let started = Date()
        let emulator = try PubSubEmulator(project: "persistor-e2e")
        defer { emulator.stop() }
        let emulatorSeconds = secondsSince(started)
        let scratch = try TemporaryDirectory("persistor-e2e-emulator-specs")
        defer { scratch.remove() }
        let store = try TemporaryDirectory("persistor-e2e-emulator-store")
        defer { if ProcessInfo.processInfo.environment["PERSISTOR_E2E_KEEP"] == nil { store.remove() } }
        let watcher = ArchiveWatcher(store)

        let port = try Self.portBelowEphemeralRange()
        var server = try PersistorProcess(config: Self.config, store: store, port: port)
        let endpoint = { (route: String) in "http://127.0.0.1:\(port)/push/\(route)" }

        // Topics and push subscriptions, read back from the emulator.
        let setup = try Self.emulatorTool(
            "setup",
            [
                "project": emulator.project,
                "topics": [Self.textTopic, Self.binaryTopic].map { topic -> [String: Any] in
                    [
                        "name": topic,
                        "subscriptions": Self.subscriptions.filter { $0.topic == topic }.map { subscription -> [String: Any] in
                            [
                                "name": subscription.name, "endpoint": endpoint(subscription.route),
                                "noWrapper": subscription.noWrapper, "writeMetadata": subscription.writeMetadata,
                            ]
                        },
                    ]
                },
            ], emulator: emulator, scratch: scratch)
        let created = try #require(setup["subscriptions"] as? [[String: Any]])
        #expect(created.count == Self.subscriptions.count)
        for subscription in Self.subscriptions {
            let name = "projects/\(emulator.project)/subscriptions/\(subscription.name)"
            let found = try #require(created.first { $0["name"] as? String == name }, "\(name) was not created")
            #expect(found["pushEndpoint"] as? String == endpoint(subscription.route))
            #expect(found["noWrapper"] as? Bool == subscription.noWrapper, "\(name): no_wrapper")
            #expect(found["writeMetadata"] as? Bool == subscription.writeMetadata, "\(name): write_metadata")
        }

        var published: [Message] = []
        var timeline: [String] = []
        func mark(_ event: String) { timeline.append(String(format: "%.1fs %@", secondsSince(started), event)) }
        // Printed on failure too: how far it got, and when.
        defer { print("Pub/Sub emulator end to end:\n  " + timeline.joined(separator: "\n  ")) }
        mark("emulator up after \(String(format: "%.1f", emulatorSeconds)) s, subscriptions created")

        // A: Persistor up. Also a message with attributes and no data.
        var batch = Self.textMessages("A", count: 6) + Self.binaryMessages("A", count: 4)
        batch.append(Message(phase: "A", topic: Self.textTopic, payload: [], attributes: ["only": "attributes"], orderingKey: ""))
        published += try Self.publish(batch, emulator: emulator, scratch: scratch)
        let missingA = try Self.waitForArchive(Self.expectations(published, project: emulator.project), watcher: watcher, timeout: 20)
        try #require(
            missingA.isEmpty,
            "phase A (Persistor up) not archived within 20 s: \(Self.describe(missingA)); persistor log:\n\(server.log)\nemulator log:\n\(emulator.log.suffix(4000))"
        )
        mark("A: \(batch.count) messages archived")

        /// Publishes `batch` while Persistor is down and waits until the emulator has failed to push
        /// to every route at least once more, so the messages are pending retries when it comes back.
        func publishWhileDown(_ batch: [Message]) throws {
            let before = Dictionary(uniqueKeysWithValues: ["wrapped", "plain", "meta"].map { ($0, Self.failedPushes(emulator, to: endpoint($0))) })
            published += try Self.publish(batch, emulator: emulator, scratch: scratch)
            let deadline = Date().addingTimeInterval(15)
            while before.contains(where: { Self.failedPushes(emulator, to: endpoint($0.key)) <= $0.value }) && Date() < deadline {
                usleep(100_000)
            }
            let failed = before.map { "\($0.key) \(Self.failedPushes(emulator, to: endpoint($0.key)) - $0.value)" }.sorted()
            #expect(
                before.allSatisfy { Self.failedPushes(emulator, to: endpoint($0.key)) > $0.value },
                "the emulator did not try (and fail) to push to every route while Persistor was down: \(failed)")
            mark("published \(batch.count) while down; failed pushes since: \(failed.joined(separator: ", "))")
        }

        // B: SIGTERM, publish while down, restart on the same port.
        server.terminate()
        #expect(try server.waitForExit(timeout: 10) == 0, "exit status after SIGTERM; log:\n\(server.log)")
        mark("SIGTERM: exited")
        try publishWhileDown(Self.textMessages("B", count: 6) + Self.binaryMessages("B", count: 4))
        server = try PersistorProcess(config: Self.config, store: store, port: port)
        let restarted = Date()
        let missingB = try Self.waitForArchive(Self.expectations(published, project: emulator.project), watcher: watcher, timeout: 20)
        try #require(
            missingB.isEmpty,
            "phase B (published while down) not archived within 20 s of the restart: \(Self.describe(missingB)); emulator log:\n\(emulator.log.suffix(4000))"
        )
        mark("restarted; the backlog was archived after \(String(format: "%.1f", secondsSince(restarted))) s")

        // C: SIGKILL while the emulator pushes a burst (published on a thread meanwhile), once a few
        // of its deliveries are archived.
        let burst = Self.textMessages("C", count: 24) + Self.binaryMessages("C", count: 8)
        let objectsBefore = watcher.objectCount
        let burstResult = LockedBox<Result<[Message], any Error>?>(nil)
        let burstThread = BackgroundThread {
            burstResult.set(Result { try Self.publish(burst, emulator: emulator, scratch: scratch) })
        }
        let killDeadline = Date().addingTimeInterval(20)
        while watcher.objectCount < objectsBefore + 6 && Date() < killDeadline { usleep(2_000) }
        server.kill()
        #expect(try server.waitForExit(timeout: 5) == 128 + SIGKILL)
        let objectsAtKill = watcher.objectCount - objectsBefore
        try burstThread.join(timeout: 40)
        published += try #require(burstResult.get()).get()
        let burstExpected = Self.expectations(published.filter { $0.phase == "C" }, project: emulator.project)
        let burstMissingAtKill = Self.missing(burstExpected, in: try watcher.records()).count
        mark(
            "SIGKILL after \(objectsAtKill) new objects: \(burstExpected.count - burstMissingAtKill) of \(burstExpected.count) burst deliveries archived, \(burstMissingAtKill) pending"
        )

        // D: publish while down after the crash, restart on the same port.
        try publishWhileDown(Self.textMessages("D", count: 6) + Self.binaryMessages("D", count: 4))
        server = try PersistorProcess(config: Self.config, store: store, port: port)
        mark("restarted")

        let expected = Self.expectations(published, project: emulator.project)
        let stillMissing = try Self.waitForArchive(expected, watcher: watcher, timeout: 45)
        mark("all but \(stillMissing.count) of \(expected.count) deliveries archived")
        server.terminate()
        #expect(try server.waitForExit(timeout: 10) == 0, "exit status after the last SIGTERM; log:\n\(server.log)")
        mark("SIGTERM: exited")

        #expect(
            stillMissing.isEmpty,
            "\(stillMissing.count) published messages never reached the archive: \(Self.describe(stillMissing)); emulator log:\n\(emulator.log.suffix(6000))"
        )

        // Check every record, read afresh the way readers do.
        let records = try allRecords(store)
        var duplicates = 0
        for expectation in expected {
            let found = Self.matches(expectation, in: records)
            duplicates += max(0, found.count - 1)
            for record in found { check(record, expectation) }
        }
        let matched = Set(expected.flatMap { Self.matches($0, in: records) }.map(\.line))
        let strays = records.filter { !matched.contains($0.line) }
        #expect(strays.isEmpty, "\(strays.count) archived records match no published message: \(strays.prefix(3).map(\.line))")
        #expect(
            records.allSatisfy { $0.source == "pubsub" },
            "no delivery may be quarantined: \(records.filter { $0.source != "pubsub" }.prefix(3).map(\.line))")
        #expect(store.files().allSatisfy { $0.hasSuffix(".ndjson.gz") }, "temporary files left after the last clean shutdown")

        // Both views of a message agree on its publish time (the write-metadata header and the envelope).
        let textViews = Set(["text-wrapped", "text-meta"].map { "projects/\(emulator.project)/subscriptions/\($0)" })
        for message in published where message.topic == Self.textTopic {
            let times = Set(
                records.filter { $0.id == message.messageId && textViews.contains($0.meta?["subscription"] as? String ?? "") }
                    .compactMap { $0.fields["eventTime"] as? String })
            #expect(times.count == 1, "message \(message.messageId): publish times \(times.sorted())")
        }

        timeline.append(
            "\(published.count) messages, \(expected.count) deliveries, \(records.count) records (\(duplicates) duplicates), \(String(format: "%.1f", secondsSince(started))) s"
        )
    }

    /// One archived record against what was published and how its subscription pushes.
    func check(_ record: ArchivedRecord, _ expected: Expectation) {
        let message = expected.message
        let name = "\(expected.subscription.split(separator: "/").last ?? "")/\(message.phase)/\(message.messageId)"
        #expect(record.source == "pubsub", "\(name): source")
        #expect(
            record.payload == message.payload,
            "\(name): payload differs (\(record.payload?.count ?? -1) bytes archived, \(message.payload.count) published)")
        let isUTF8 = String(validating: message.payload, as: UTF8.self) != nil
        #expect((record.fields[isUTF8 ? "data" : "dataBase64"] as? String) != nil, "\(name): payload as \(isUTF8 ? "data" : "dataBase64")")
        let meta = record.meta ?? [:]
        let attributes = record.attributes ?? [:]
        let publishTime = #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"#

        if !expected.noWrapper {
            // The envelope: id, publish time, attributes as published, subscription. The emulator
            // sends no orderingKey or deliveryAttempt; should it start to, they must be right.
            #expect(record.id == message.messageId, "\(name): id")
            #expect(
                (record.fields["eventTime"] as? String)?.range(of: publishTime, options: .regularExpression) != nil,
                "\(name): eventTime \(String(describing: record.fields["eventTime"]))")
            #expect(attributes == message.attributes, "\(name): attributes \(attributes)")
            #expect(meta["subscription"] as? String == expected.subscription, "\(name): meta.subscription")
            #expect(Set(meta.keys).isSubset(of: ["subscription", "orderingKey", "deliveryAttempt"]), "\(name): meta \(meta)")
            if let key = meta["orderingKey"] { #expect(key as? String == message.orderingKey, "\(name): meta.orderingKey") }
            if let attempt = meta["deliveryAttempt"] { #expect(((attempt as? NSNumber)?.intValue ?? 0) >= 1, "\(name): meta.deliveryAttempt") }
        } else if expected.writeMetadata {
            // x-goog-pubsub-* headers: id, publish time, subscription; the attributes come as headers
            // (lower-cased), plus the emulator's Content-type, plus its x-goog-ordering-key.
            #expect(record.id == message.messageId, "\(name): id")
            #expect(
                (record.fields["eventTime"] as? String)?.range(of: publishTime, options: .regularExpression) != nil,
                "\(name): eventTime \(String(describing: record.fields["eventTime"]))")
            #expect(meta["subscription"] as? String == expected.subscription, "\(name): meta.subscription")
            var expectedAttributes = Dictionary(uniqueKeysWithValues: message.attributes.map { ($0.key.lowercased(), $0.value) })
            if let contentType = attributes["content-type"] {
                #expect(contentType == Self.emulatorContentType, "\(name): content-type \(contentType)")
                expectedAttributes["content-type"] = contentType
            }
            if !message.orderingKey.isEmpty {
                let viaMeta = meta["orderingKey"] as? String == message.orderingKey
                let viaHeader = attributes["x-goog-ordering-key"] == message.orderingKey
                #expect(
                    viaMeta || viaHeader, "\(name): the ordering key is neither meta.orderingKey nor the emulator's x-goog-ordering-key attribute")
                if viaHeader { expectedAttributes["x-goog-ordering-key"] = message.orderingKey }
            }
            #expect(attributes == expectedAttributes, "\(name): attributes \(attributes), expected \(expectedAttributes)")
            #expect(Set(meta.keys).isSubset(of: ["subscription", "orderingKey"]), "\(name): meta \(meta)")
        } else {
            // The body alone: an assigned id, no time, no attributes but the emulator's Content-type.
            #expect(!record.id.isEmpty, "\(name): an assigned id")
            #expect(meta["idAssigned"] as? Bool == true, "\(name): meta.idAssigned \(meta)")
            #expect(record.fields["eventTime"] == nil, "\(name): no eventTime without metadata")
            #expect(attributes.isEmpty || attributes == ["content-type": Self.emulatorContentType], "\(name): attributes \(attributes)")
        }
    }
}

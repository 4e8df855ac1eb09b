import Foundation
import PersistorCore
import PersistorStores
import PersistorTestSupport
import PersistorTesting
import Synchronization
import Testing

@testable import PersistorArchive

@Suite struct RouteArchiverTests {
    func record(_ id: String, attributes: [(key: String, value: String)] = []) -> Record {
        Record(
            id: id, source: .pubsub, route: "orders", receivedAt: UTCTime(seconds: 1_795_719_600),
            attributes: attributes, payload: Array("payload-\(id)".utf8))
    }

    func submit(_ archiver: RouteArchiver, _ records: [Record]) async -> Result<Void, ArchiveFailure> {
        await withCheckedContinuation { continuation in
            archiver.submit(records) { continuation.resume(returning: $0) }
        }
    }

    func lines(_ blob: Blob) throws -> [[String: Any]] {
        try systemGunzip(blob.bytes).split(separator: 0x0A).map {
            try #require(JSONSerialization.jsonObject(with: Data($0)) as? [String: Any])
        }
    }

    @Test func concurrentSubmissionsShareBatchesAndAllComplete() async throws {
        let store = InMemoryBlobWriter(delay: .milliseconds(20))
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(path: try PathTemplate("{route}/{yyyy}")),
            store: store, namer: ObjectNamer(instance: "abcdefabcdef"))
        let results = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<200 { group.addTask { if case .success = await submit(archiver, [record("\(i)")]) { true } else { false } } }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results.count == 200 && results.allSatisfy { $0 })
        let puts = store.puts
        #expect(puts.count < 200, "group commit puts many records in one object (got \(puts.count) objects)")
        let ids = try puts.flatMap { try lines($0) }.compactMap { $0["id"] as? String }
        #expect(Set(ids) == Set((0..<200).map(String.init)))
        #expect(ids.count == 200)
        for blob in puts {
            #expect(blob.key.hasPrefix("orders/2026/20261126T190000.000Z-abcdefabcdef-"))
            #expect(blob.key.hasSuffix(".ndjson.gz"))
            #expect(blob.contentType == "application/x-ndjson")
        }
        #expect(Set(puts.map(\.key)).count == puts.count, "object names are unique")
    }

    @Test func aLargeBatchIsOneObjectWithEveryLine() async throws {
        // Over pieceBytes, the object is compressed in pieces as they fill, joined into one member.
        let store = InMemoryBlobWriter(delay: .milliseconds(50))
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        let padding = String(repeating: "x", count: 1_000)
        func big(_ i: Int) -> Record {
            Record(
                id: "\(i)", source: .pubsub, route: "orders", receivedAt: UTCTime(seconds: 1_795_719_600),
                payload: Array("{\"n\":\(i),\"pad\":\"\(padding)\"}".utf8))
        }
        guard case .success = await submit(archiver, (0..<100).map(big)) else { Issue.record("expected success"); return }
        let puts = store.puts
        #expect(puts.count == 1)
        let records = try puts.flatMap { try lines($0) }
        #expect(records.compactMap { $0["id"] as? String } == (0..<100).map(String.init))
        #expect(puts.first?.metadata["records"] == "100")
    }

    @Test func piecesCompressedAheadJoinIntoOneMemberAsSmallAsOneGo() async throws {
        // Many deliveries fill several pieces, which are compressed as they fill; each is primed
        // with the end of the one before, so the object compresses about as well as in one go.
        let store = InMemoryBlobWriter()
        let settings = ArchiveSettings(batch: .init(maxRecords: 10_000, maxDelay: .milliseconds(500)), path: try PathTemplate("{route}"))
        let archiver = RouteArchiver(
            route: "orders", settings: settings,
            store: store, namer: ObjectNamer())
        let skus = ["sku-red-shirt", "sku-blue-jeans", "sku-green-hat", "sku-black-shoes"]
        func order(_ i: Int) -> Record {
            let items = (0..<(i % 5 + 1)).map { "{\"sku\":\"\(skus[($0 + i) % 4])\",\"qty\":\($0 + 1),\"price\":\(i % 97).99}" }
            return Record(
                id: "order-\(i)", source: .pubsub, route: "orders", receivedAt: UTCTime(seconds: 1_795_719_600),
                payload: Array("{\"orderId\":\(i * 7919),\"customer\":\"c-\(i % 113)\",\"items\":[\(items.joined(separator: ","))]}".utf8))
        }
        await withTaskGroup(of: Void.self) { group in
            for chunk in 0..<20 {
                group.addTask { _ = await submit(archiver, (0..<200).map { order(chunk * 200 + $0) }) }
            }
        }
        let puts = store.puts
        #expect(puts.count == 1, "maxDelay holds the batch open for every delivery")
        let object = try #require(puts.first)
        let text = try systemGunzip(object.bytes)
        #expect(text.count > 5 * PieceCompressor.pieceBytes, "the object spans several pieces")
        #expect(try lines(object).count == 4_000)
        let oneGo = try GzipCompressor(level: 6)
        try oneGo.append(text)
        let inOneGo = try oneGo.finish()
        #expect(
            Double(object.bytes.count) <= Double(inOneGo.count) * 1.03,
            "\(object.bytes.count) bytes in pieces against \(inOneGo.count) in one go")
    }

    @Test func aPieceIsCompressedOnceByWhoeverClaimsItFirst() async throws {
        let compression = PieceCompression(piece: [Array("line\n".utf8)], previousPiece: [])
        let claimed = try #require(compression.claim())
        #expect(claimed.piece == [Array("line\n".utf8)])
        #expect(compression.claim() == nil, "a piece is handed out once")
        // Waiters before and after the claimer finishes get the same segment.
        async let early = compression.segment
        try await Task.sleep(for: .milliseconds(50))
        let compressor = try GzipCompressor(level: 6, rawSegments: true)
        try compressor.append(claimed.piece[0])
        compression.finish(.success(try compressor.finishSegment(last: true)))
        let late = try await compression.segment.get()
        #expect(try systemGunzip(ParallelGzip.assemble([await early.get()])) == Array("line\n".utf8))
        #expect(try systemGunzip(ParallelGzip.assemble([late])) == Array("line\n".utf8))
    }

    @Test func aFailedWriteFailsEveryWaiterOfTheBatch() async throws {
        let store = InMemoryBlobWriter()
        store.failPuts()
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        let result = await submit(archiver, [record("1"), record("2")])
        guard case .failure(.store(let error)) = result else { Issue.record("expected a store failure"); return }
        #expect(error.status == 503)
        store.heal()
        guard case .success = await submit(archiver, [record("3")]) else { Issue.record("expected recovery"); return }
        #expect(store.puts.count == 1)
    }

    @Test func aFailedObjectFailsOnlyTheDeliveriesWithRecordsInIt() async throws {
        let store = InMemoryBlobWriter()
        store.failPuts(where: { $0.key.contains("/poison/") })
        let archiver = RouteArchiver(
            route: "orders",
            settings: ArchiveSettings(batch: .init(maxDelay: .milliseconds(200)), path: try PathTemplate("{route}/{attr:tenant}")),
            store: store, namer: ObjectNamer())
        func tenant(_ id: String, _ name: String) -> Record { record(id, attributes: [("tenant", name)]) }
        // One batch (maxDelay holds it open): a delivery to a good directory, one to the failing
        // one, and one with a record in each (all-or-none: it fails).
        async let good = submit(archiver, [tenant("1", "good"), tenant("2", "good")])
        async let poisoned = submit(archiver, [tenant("3", "poison")])
        async let mixed = submit(archiver, [tenant("4", "good"), tenant("5", "poison")])
        let results = await [good, poisoned, mixed]
        #expect(results.map { if case .success = $0 { true } else { false } } == [true, false, false])
        let puts = store.puts
        #expect(puts.count == 1 && puts[0].key.hasPrefix("orders/good/"), "\(puts.map(\.key))")
    }

    @Test func twoLongAttributesInOneSegmentStillWriteToTheLocalStore() async throws {
        // 2 × 128 key-safe bytes in one segment used to exceed NAME_MAX: ENAMETOOLONG forever.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(path: try PathTemplate("{route}/{attr:a}{attr:b}")),
            store: try LocalFileStore(root: dir.path), namer: ObjectNamer())
        let long = String(repeating: "x", count: 200)
        let result = await submit(archiver, [record("1", attributes: [("a", long), ("b", long)])])
        guard case .success = result else { Issue.record("expected success, got \(result)"); return }
        #expect(dir.files().count == 1)
    }

    @Test func recordsWithDifferentPathsBecomeSeparateObjects() async throws {
        let store = InMemoryBlobWriter()
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(path: try PathTemplate("{route}/{attr:tenant}")),
            store: store, namer: ObjectNamer())
        guard
            case .success = await submit(
                archiver, [record("1", attributes: [("tenant", "a")]), record("2", attributes: [("tenant", "b")]), record("3")])
        else {
            Issue.record("expected success"); return
        }
        let keys = store.puts.map { $0.key.split(separator: "/").dropLast().joined(separator: "/") }.sorted()
        #expect(keys == ["orders/_", "orders/a", "orders/b"])
    }

    @Test func maxRecordsSplitsBatches() async throws {
        let store = InMemoryBlobWriter(delay: .milliseconds(50))
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(batch: .init(maxRecords: 5), path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<40 { group.addTask { _ = await submit(archiver, [record("\(i)")]) } }
        }
        let counts = try store.puts.map { try lines($0).count }
        #expect(counts.reduce(0, +) == 40)
        #expect(counts.allSatisfy { $0 <= 5 }, "batches hold at most maxRecords: \(counts)")
    }

    @Test func maxDelayHoldsABatchOpenAndDrainFlushesIt() async throws {
        let store = InMemoryBlobWriter()
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(batch: .init(maxDelay: .seconds(30)), path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        let done = Atomic<Int>(0)
        for i in 0..<3 { archiver.submit([record("\(i)")]) { _ in done.add(1, ordering: .relaxed) } }
        try await Task.sleep(for: .milliseconds(100))
        #expect(store.puts.count == 0, "the batch waits for maxDelay")
        await archiver.drain()
        #expect(store.puts.count == 1)
        #expect(done.load(ordering: .relaxed) == 3)
    }

    @Test func aFullBacklogRefusesDeliveriesWithoutQueueingThem() async throws {
        let store = InMemoryBlobWriter(delay: .milliseconds(300))
        let settings = ArchiveSettings(batch: .init(maxRecords: 2), path: try PathTemplate("{route}"), maxPendingRecords: 3)
        let archiver = RouteArchiver(route: "orders", settings: settings, store: store, namer: ObjectNamer())
        let results = Mutex<[String: Result<Void, ArchiveFailure>]>([:])
        for i in 0..<5 {
            archiver.submit([record("\(i)")]) { result in results.withLock { $0["\(i)"] = result } }
        }
        // Three fit the backlog; the fourth and fifth are refused at once, while the store is still busy.
        let refused = results.withLock { $0.filter { if case .failure(.backlogFull) = $0.value { true } else { false } } }
        #expect(Set(refused.keys) == ["3", "4"])
        await archiver.drain()
        let written = Set(try store.puts.flatMap { try lines($0) }.compactMap { $0["id"] as? String })
        #expect(written == ["0", "1", "2"])
        // Once the backlog is written, deliveries are taken again.
        guard case .success = await submit(archiver, [record("5")]) else { Issue.record("expected success"); return }
    }

    @Test(arguments: zip([1, 3, 2], [0, 0, 20]))
    func concurrentWritesBoundsTheBatchesInFlight(concurrentWrites: Int, maxDelayMilliseconds: Int) async throws {
        let store = InMemoryBlobWriter(delay: .milliseconds(100))
        let settings = ArchiveSettings(
            batch: .init(maxDelay: .milliseconds(maxDelayMilliseconds), concurrentWrites: concurrentWrites), path: try PathTemplate("{route}"))
        let archiver = RouteArchiver(route: "orders", settings: settings, store: store, namer: ObjectNamer())
        let answered = Atomic<Int>(0)
        // Deliveries keep arriving while writes are in progress, so every write slot gets used.
        for i in 0..<30 {
            archiver.submit([record("\(i)")]) { result in
                if case .success = result { answered.add(1, ordering: .relaxed) }
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        await archiver.drain()
        #expect(answered.load(ordering: .relaxed) == 30, "drain returns once every write has finished")
        #expect(store.putsInFlight == (now: 0, most: concurrentWrites))
        let ids = try store.puts.flatMap { try lines($0) }.compactMap { $0["id"] as? String }
        #expect(ids.sorted() == (0..<30).map(String.init).sorted(), "every record is written exactly once")
    }

    @Test func maxDelayTimerFlushes() async throws {
        let store = InMemoryBlobWriter()
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(batch: .init(maxDelay: .milliseconds(50)), path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        let result = await submit(archiver, [record("1")])
        guard case .success = result else { Issue.record("expected success"); return }
        #expect(store.puts.count == 1)
    }
}

@Suite struct RawFormatTests {
    func submit(_ archiver: RouteArchiver, _ records: [Record]) async -> Result<Void, ArchiveFailure> {
        await withCheckedContinuation { continuation in
            archiver.submit(records) { continuation.resume(returning: $0) }
        }
    }

    @Test func oneCreateOnlyObjectPerRecordWithSidecarAndRedeliveryStoresNothingNew() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        let archiver = RouteArchiver(
            route: "orders", settings: ArchiveSettings(format: .raw, path: try PathTemplate("{route}/{yyyy}/{MM}/{dd}")),
            store: store, namer: ObjectNamer())
        let payload: [UInt8] = [0x00, 0xFF] + Array("payload".utf8)
        func record(receivedAt: Int64) -> Record {
            Record(
                id: "../m 1", source: .pubsub, route: "orders", receivedAt: UTCTime(seconds: receivedAt),
                eventTime: "2021-02-26T19:13:55.749Z", attributes: [("k", "v")],
                meta: [("subscription", .string("projects/p/subscriptions/s"))], payload: payload)
        }
        guard case .success = await submit(archiver, [record(receivedAt: 1_795_719_600)]) else { Issue.record("first write failed"); return }
        // The redelivery arrives a day later: the event time still maps it to the same keys.
        guard case .success = await submit(archiver, [record(receivedAt: 1_795_806_000)]) else { Issue.record("redelivery failed"); return }
        let base = "orders/2021/02/26/" + ObjectNamer.rawName(record(receivedAt: 0))
        #expect(dir.files() == [base + ".gz", base + ".json"])
        #expect(base.wholeMatch(of: /orders\/2021\/02\/26\/%2E\.%2Fm%201\.[0-9a-f]{32}/) != nil, "\(base)")
        let gz = try [UInt8](Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + base + ".gz")))
        #expect(try systemGunzip(gz) == payload)
        let sidecarBytes = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + base + ".json"))
        let sidecar = try #require(JSONSerialization.jsonObject(with: sidecarBytes) as? [String: Any])
        #expect(sidecar["id"] as? String == "../m 1")
        #expect(sidecar["formatVersion"] as? String == "1")
        #expect(sidecar["receivedAt"] as? String == "2026-11-26T19:00:00.000Z", "the first delivery's sidecar is kept")
        #expect(sidecar["data"] == nil && sidecar["dataBase64"] == nil)
        #expect((sidecar["meta"] as? [String: Any])?["subscription"] as? String == "projects/p/subscriptions/s")
    }
}

/// Raw mode's keys name one message exactly (docs/archive-format.md#raw-format): create-only "already
/// exists" may only ever meet the same message.
@Suite struct RawKeyTests {
    func submit(_ archiver: RouteArchiver, _ records: [Record]) async -> Result<Void, ArchiveFailure> {
        await withCheckedContinuation { continuation in
            archiver.submit(records) { continuation.resume(returning: $0) }
        }
    }

    func record(
        _ id: String, _ source: RecordSource = .cloudevents, meta: [(key: String, value: MetaValue)] = [],
        attributes: [(key: String, value: String)] = [], payload: String = "p", receivedAt: Int64 = 1_795_719_600
    ) -> Record {
        Record(
            id: id, source: source, route: "r", receivedAt: UTCTime(seconds: receivedAt), eventTime: "2021-02-26T19:13:55Z",
            attributes: attributes, meta: meta, payload: Array(payload.utf8))
    }

    /// Archives each record as its own delivery; returns the payloads stored, one per .gz object.
    func archive(_ records: [Record]) async throws -> [String] {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        let archiver = RouteArchiver(
            route: "r", settings: ArchiveSettings(format: .raw, path: try PathTemplate("{route}")),
            store: store, namer: ObjectNamer())
        for record in records {
            guard case .success = await submit(archiver, [record]) else { throw TestFailure("\(record.id) was not stored") }
        }
        let objects = dir.files().filter { $0.hasSuffix(".gz") }
        #expect(dir.files().count == 2 * objects.count, "each payload has its sidecar")
        return try objects.map {
            String(decoding: try systemGunzip([UInt8](Data(contentsOf: URL(fileURLWithPath: dir.path + "/" + $0)))), as: UTF8.self)
        }.sorted()
    }

    @Test func messagesSharingAnIDAreEachStored() async throws {
        let cjk = String(repeating: "漢", count: 43)  // 387 key-safe bytes: only the first 126 are kept
        let stored = try await archive([
            // CloudEvents: only source + id is unique
            // (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md#id).
            record("1", meta: [("source", .string("/a"))], payload: "ce a"),
            record("1", meta: [("source", .string("/b"))], payload: "ce b"),
            // Event Grid: unique per topic.
            record("1", .eventgrid, meta: [("topic", .string("/t1"))], payload: "eg 1"),
            record("1", .eventgrid, meta: [("topic", .string("/t2"))], payload: "eg 2"),
            // Pub/Sub: unique per topic; the push names the subscription.
            record("1", .pubsub, meta: [("subscription", .string("s1"))], payload: "ps 1"),
            record("1", .pubsub, meta: [("subscription", .string("s2"))], payload: "ps 2"),
            // Ids alike in their first 128 key-safe bytes.
            record(cjk + "1", payload: "cjk 1"),
            record(cjk + "2", payload: "cjk 2"),
            // The same id and scope, other content: not a redelivery, so not dropped.
            record("2", payload: "two"),
            record("2", payload: "two, changed"),
            record("2", attributes: [("k", "v")], payload: "two"),
        ])
        #expect(stored == ["ce a", "ce b", "cjk 1", "cjk 2", "eg 1", "eg 2", "ps 1", "ps 2", "two", "two", "two, changed"])
    }

    @Test func aRedeliveryMapsToTheSameKeys() async throws {
        let first = record("7", .pubsub, meta: [("subscription", .string("s")), ("deliveryAttempt", .int(1))], payload: "once")
        let again = record(
            "7", .pubsub, meta: [("subscription", .string("s")), ("deliveryAttempt", .int(2))], payload: "once",
            receivedAt: 1_795_806_000)
        #expect(ObjectNamer.rawName(first) == ObjectNamer.rawName(again))
        #expect(try await archive([first, again]) == ["once"])
    }
}

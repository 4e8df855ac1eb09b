import Foundation
import Dispatch
import PersistorStores
import Synchronization

/// How a route's records become objects.
public struct ArchiveSettings: Sendable {
    /// `ndjson`: one gzipped NDJSON object per batch and path. `raw`: one create-only gzipped
    /// object per record (its payload) plus a `{id}.json` sidecar, so a redelivery stores nothing new.
    public enum Format: Sendable {
        case ndjson, raw
    }

    public var format: Format
    public var path: PathTemplate
    /// Use the record's event time (when it parses) for the path instead of the receive time.
    public var useEventTime: Bool
    public var maxRecords: Int
    public var maxBytes: Int
    /// How long a batch may stay open to collect more records (0: write it as soon as fewer than
    /// `concurrentWrites` writes are in progress).
    public var maxDelay: Duration
    /// Batches written at the same time (1: each waits for the previous write to finish). More
    /// hide a remote store's latency, at the price of smaller objects.
    public var concurrentWrites: Int
    public var gzipLevel: Int
    /// Records not yet durable (open, sealed and being written) beyond which deliveries are refused.
    public var maxPendingRecords: Int
    /// Encoded bytes not yet durable beyond which deliveries are refused.
    public var maxPendingBytes: Int

    public init(format: Format = .ndjson, path: PathTemplate, useEventTime: Bool = false, maxRecords: Int = 1000,
                maxBytes: Int = 8 << 20, maxDelay: Duration = .zero, concurrentWrites: Int = 1, gzipLevel: Int = 6,
                maxPendingRecords: Int = 100_000, maxPendingBytes: Int = 256 << 20) {
        self.format = format
        self.path = path
        self.useEventTime = useEventTime
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.maxDelay = maxDelay
        self.concurrentWrites = concurrentWrites
        self.gzipLevel = gzipLevel
        self.maxPendingRecords = maxPendingRecords
        self.maxPendingBytes = maxPendingBytes
    }
}

/// Names batch objects uniquely across processes: `{timestamp}-{instance}-{seq}.ndjson.gz`.
public final class ObjectNamer: Sendable {
    /// 12 random hex characters, fixed for the process.
    public let instance: String
    private let sequence = Atomic<Int>(0)

    public init(instance: String = ObjectNamer.randomInstance()) {
        self.instance = instance
    }

    public static func randomInstance() -> String {
        let value = UInt64.random(in: 0..<(1 << 48))
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }

    func batchName(firstReceivedAt: UTCTime) -> String {
        let seq = String(sequence.add(1, ordering: .relaxed).newValue)
        let padded = String(repeating: "0", count: max(0, 12 - seq.count)) + seq
        return "\(firstReceivedAt.compact)-\(instance)-\(padded).ndjson.gz"
    }
}

/// Why a delivery's records were not archived. Either way nothing of it may be acknowledged.
public enum ArchiveFailure: Error, Sendable, CustomStringConvertible {
    /// The store refused or failed the write.
    case store(BlobStoreError)
    /// The route already holds its limit of records or bytes that are not yet durable (the store
    /// is slower than the senders); the delivery was refused without being queued.
    case backlogFull(records: Int, bytes: Int)

    public var description: String {
        switch self {
        case .store(let error): "\(error)"
        case .backlogFull(let records, let bytes): "archive backlog full (\(records) records, \(bytes) bytes not yet durable)"
        }
    }
}

/// Outcome of archiving one delivery's records.
public typealias ArchiveCompletion = @Sendable (Result<Void, ArchiveFailure>) -> Void

/// Group commit for one route: records from many requests share one batch; a batch is written
/// as soon as fewer than `concurrentWrites` writes are in progress (or when `maxDelay` passes),
/// and each waiter is answered once its whole batch is durable.
public final class RouteArchiver: Sendable {
    public let route: String
    private let settings: ArchiveSettings
    private let store: any BlobWriter
    private let namer: ObjectNamer
    private let state = Mutex(State())
    /// Compressors kept between objects (zlib's state is costly to set up), one per concurrent
    /// user at most; a user takes one or makes its own.
    private let spareCompressors = Mutex<[GzipCompressor]>([])
    /// Raw-segment compressors kept between batches, for objects compressed in parallel pieces.
    private let spareSegmentCompressors = Mutex<[GzipCompressor]>([])
    /// Pieces an object's lines are split into for compression on several threads: one per
    /// processor, each at least `minPieceBytes`, so small objects stay in one piece.
    private let parallelism = min(8, max(1, ProcessInfo.processInfo.activeProcessorCount))
    static let minPieceBytes = 32 * 1024

    private struct Batch {
        /// ndjson: encoded lines per directory, with the receive times of the first and last.
        var lines: [String: [[UInt8]]] = [:]
        var firstReceivedAt: [String: UTCTime] = [:]
        var lastReceivedAt: [String: UTCTime] = [:]
        /// raw: finished objects (payloads and sidecars).
        var objects: [Blob] = []
        var waiters: [ArchiveCompletion] = []
        var records = 0
        var bytes = 0
        var openedAt = ContinuousClock.now
        var isEmpty: Bool { records == 0 && waiters.isEmpty }
    }

    private struct State {
        var open = Batch()
        var sealed: [Batch] = []
        /// Flush loops running, each writing one batch at a time (at most `concurrentWrites`).
        var flushers = 0
        var timerArmed = false
        var draining = false
        /// Records and bytes submitted and not yet written (or failed), for the backlog limit.
        var pendingRecords = 0
        var pendingBytes = 0
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
    }

    public init(route: String, settings: ArchiveSettings, store: any BlobWriter, namer: ObjectNamer) {
        self.route = route
        self.settings = settings
        self.store = store
        self.namer = namer
    }

    /// Adds a delivery's records (all-or-none) and calls `completion` once they are durable or failed.
    /// An empty list completes after the current batch, like any other waiter.
    public func submit(_ records: [Record], completion: @escaping ArchiveCompletion) {
        var encoded: [(path: String, line: [UInt8], receivedAt: UTCTime)] = []
        var objects: [Blob] = []
        switch settings.format {
        case .ndjson:
            encoded.reserveCapacity(records.count)
            for record in records {
                encoded.append((directory(for: record, time: ndjsonTime(record)), RecordEncoder.line(record), record.receivedAt))
            }
        case .raw:
            do {
                for record in records { objects += try rawObjects(record) }
            } catch {
                completion(.failure(.store(BlobStoreError(store: store.name, key: nil, message: "gzip: \(error)", retryable: true))))
                return
            }
        }
        let size = encoded.reduce(0) { $0 + $1.line.count } + objects.reduce(0) { $0 + $1.bytes.count }
        let count = records.count
        let (accepted, startFlusher, armTimer) = state.withLock { state -> (Bool, Bool, Bool) in
            if state.pendingRecords > 0 && (state.pendingRecords + count > settings.maxPendingRecords
                                            || state.pendingBytes + size > settings.maxPendingBytes) {
                return (false, false, false)
            }
            state.pendingRecords += count
            state.pendingBytes += size
            if !state.open.isEmpty && (state.open.records + count > settings.maxRecords
                                       || state.open.bytes + size > settings.maxBytes) {
                state.sealed.append(state.open)
                state.open = Batch()
            }
            if state.open.isEmpty { state.open.openedAt = .now }
            for item in encoded {
                state.open.lines[item.path, default: []].append(item.line)
                if state.open.firstReceivedAt[item.path] == nil { state.open.firstReceivedAt[item.path] = item.receivedAt }
                state.open.lastReceivedAt[item.path] = max(state.open.lastReceivedAt[item.path] ?? item.receivedAt, item.receivedAt)
            }
            state.open.objects += objects
            state.open.records += count
            state.open.bytes += size
            state.open.waiters.append(completion)
            if settings.maxDelay == .zero || !state.sealed.isEmpty || state.draining {
                guard state.flushers < settings.concurrentWrites else { return (true, false, false) }
                state.flushers += 1
                return (true, true, false)
            }
            if state.timerArmed || state.flushers >= settings.concurrentWrites { return (true, false, false) }
            state.timerArmed = true
            return (true, false, true)
        }
        guard accepted else {
            let (records, bytes) = state.withLock { ($0.pendingRecords, $0.pendingBytes) }
            completion(.failure(.backlogFull(records: records, bytes: bytes)))
            return
        }
        if startFlusher { startFlushing() }
        if armTimer { armDelayTimer(after: settings.maxDelay) }
    }

    /// Flushes everything still open (ignoring `maxDelay`) and returns when no write is pending.
    public func drain() async {
        let start = state.withLock { state -> Bool in
            state.draining = true
            guard state.flushers < settings.concurrentWrites, !state.open.isEmpty else { return false }
            state.flushers += 1
            return true
        }
        if start { startFlushing() }
        await withCheckedContinuation { continuation in
            let idle = state.withLock { state -> Bool in
                if state.flushers == 0 && state.open.isEmpty && state.sealed.isEmpty { return true }
                state.idleWaiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    private func ndjsonTime(_ record: Record) -> UTCTime {
        settings.useEventTime ? eventTimeOrReceived(record) : record.receivedAt
    }

    private func eventTimeOrReceived(_ record: Record) -> UTCTime {
        record.eventTime.flatMap(UTCTime.init(rfc3339:)) ?? record.receivedAt
    }

    private func directory(for record: Record, time: UTCTime) -> String {
        settings.path.expand(route: record.route, source: record.source, time: time, attribute: record.attribute)
    }

    /// raw: `{path}/{id}.gz` (the payload) and `{path}/{id}.json` (the record without payload, plus
    /// `formatVersion`), both create-only. The path uses the event time, so a redelivery maps to
    /// the same keys even when it arrives hours later.
    private func rawObjects(_ record: Record) throws(GzipError) -> [Blob] {
        let base = directory(for: record, time: eventTimeOrReceived(record)) + "/" + PathTemplate.keySafe(record.id)
        let metadata = ["id": record.id, "source": record.source.rawValue, "route": record.route,
                        "formatVersion": RecordEncoder.formatVersion]
        return [
            Blob(key: base + ".gz", bytes: try gzip([record.payload]),
                 contentType: "application/octet-stream", contentEncoding: "gzip", metadata: metadata, createOnly: true),
            Blob(key: base + ".json", bytes: RecordEncoder.sidecar(record), contentType: "application/json",
                 metadata: metadata, createOnly: true),
        ]
    }

    /// One gzip member holding `chunks` in order.
    private func gzip(_ chunks: [[UInt8]]) throws(GzipError) -> [UInt8] {
        let compressor: GzipCompressor
        if let spare = spareCompressors.withLock({ $0.popLast() }) {
            compressor = spare
        } else {
            compressor = try GzipCompressor(level: settings.gzipLevel)
        }
        for chunk in chunks { try compressor.append(chunk) }
        let member = try compressor.finish()
        spareCompressors.withLock { spares in
            if spares.count < settings.concurrentWrites { spares.append(compressor) }
        }
        return member
    }

    /// One gzip member of `lines`: compressed in parallel pieces when there is enough of it (a
    /// big batch then takes a fraction of the time to compress before it can be written).
    private func gzipObject(_ lines: [[UInt8]]) async throws(GzipError) -> [UInt8] {
        let total = lines.reduce(0) { $0 + $1.count }
        let count = min(parallelism, total / Self.minPieceBytes)
        guard count > 1 else { return try gzip(lines) }
        var pieces: [[[UInt8]]] = [[]]
        var done = 0
        for line in lines {
            if done >= total * pieces.count / count && pieces.count < count { pieces.append([]) }
            pieces[pieces.count - 1].append(line)
            done += line.count
        }
        var compressors = spareSegmentCompressors.withLock { spares in
            let taken = Array(spares.suffix(pieces.count))
            spares.removeLast(taken.count)
            return taken
        }
        while compressors.count < pieces.count {
            compressors.append(try GzipCompressor(level: settings.gzipLevel, rawSegments: true))
        }
        let member = try await ParallelGzip.member(pieces, compressors: compressors)
        spareSegmentCompressors.withLock { spares in
            let keep = parallelism * settings.concurrentWrites
            if spares.count < keep { spares += compressors.prefix(keep - spares.count) }
        }
        return member
    }

    private func startFlushing() {
        Task { await self.flushLoop() }
    }

    private func armDelayTimer(after delay: Duration) {
        let nanos = delay.components.seconds * 1_000_000_000 + delay.components.attoseconds / 1_000_000_000
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(Int(nanos))) {
            let start = self.state.withLock { state -> Bool in
                state.timerArmed = false
                guard state.flushers < self.settings.concurrentWrites, !state.open.isEmpty else { return false }
                state.flushers += 1
                return true
            }
            if start { self.startFlushing() }
        }
    }

    private func flushLoop() async {
        while let batch = nextBatch() {
            let result = await write(batch).mapError(ArchiveFailure.store)
            state.withLock { state in
                state.pendingRecords -= batch.records
                state.pendingBytes -= batch.bytes
            }
            for waiter in batch.waiters { waiter(result) }
        }
    }

    /// The next batch to write, or nil after ending this flush loop.
    private func nextBatch() -> Batch? {
        let (batch, rearm, idle) = state.withLock { state -> (Batch?, Duration?, [CheckedContinuation<Void, Never>]) in
            if !state.sealed.isEmpty { return (state.sealed.removeFirst(), nil, []) }
            if !state.open.isEmpty {
                let age = ContinuousClock.now - state.open.openedAt
                if settings.maxDelay == .zero || state.draining || age >= settings.maxDelay {
                    let batch = state.open
                    state.open = Batch()
                    return (batch, nil, [])
                }
                state.flushers -= 1
                if !state.timerArmed {
                    state.timerArmed = true
                    return (nil, settings.maxDelay - age, [])
                }
                return (nil, nil, [])
            }
            state.flushers -= 1
            guard state.flushers == 0 else { return (nil, nil, []) }
            let idle = state.idleWaiters
            state.idleWaiters = []
            return (nil, nil, idle)
        }
        if let rearm { armDelayTimer(after: rearm) }
        for waiter in idle { waiter.resume() }
        return batch
    }

    private func write(_ batch: Batch) async -> Result<Void, BlobStoreError> {
        var blobs = batch.objects
        for (path, lines) in batch.lines {
            let name = namer.batchName(firstReceivedAt: batch.firstReceivedAt[path]!)
            do {
                blobs.append(Blob(key: path + "/" + name, bytes: try await gzipObject(lines),
                                  contentType: "application/x-ndjson", contentEncoding: "gzip",
                                  metadata: ["records": String(lines.count),
                                             "firstReceivedAt": batch.firstReceivedAt[path]!.iso8601,
                                             "lastReceivedAt": batch.lastReceivedAt[path]!.iso8601,
                                             "formatVersion": RecordEncoder.formatVersion]))
            } catch {
                return .failure(BlobStoreError(store: store.name, key: path + "/" + name,
                                               message: "gzip: \(error)", retryable: true))
            }
        }
        if blobs.isEmpty { return .success(()) }
        if blobs.count == 1 { return await Self.put(blobs[0], to: store) }
        return await withTaskGroup(of: Result<Void, BlobStoreError>.self) { group in
            for blob in blobs {
                group.addTask { [store] in await Self.put(blob, to: store) }
            }
            var outcome: Result<Void, BlobStoreError> = .success(())
            for await result in group {
                if case .failure = result, case .success = outcome { outcome = result }
            }
            return outcome
        }
    }

    private static func put(_ blob: Blob, to store: any BlobWriter) async -> Result<Void, BlobStoreError> {
        do throws(BlobStoreError) {
            _ = try await store.put(blob)
            return .success(())
        } catch {
            return .failure(error)
        }
    }
}

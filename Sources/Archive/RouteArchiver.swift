import PersistorCore
import Synchronization

/// Group commit for one route: records from many requests share one batch; a batch is written
/// as soon as fewer than `concurrentWrites` writes are in progress (or when `maxDelay` passes),
/// and each waiter is answered once every object holding its records is durable (or one failed:
/// a failed object fails only the deliveries with records in it).
package final class RouteArchiver: Sendable {
    package let route: String
    private let settings: ArchiveSettings
    private let store: any BlobWriter
    private let namer: ObjectNamer
    private let state = Mutex(State())
    private let compressor: PieceCompressor

    /// One ndjson object of a batch: its gzip member in the making, and what its metadata says.
    private struct ObjectLines {
        var member = PieceCompressor.Member()
        var records = 0
        var firstReceivedAt: UTCTime
        var lastReceivedAt: UTCTime

        init(firstReceivedAt: UTCTime) {
            self.firstReceivedAt = firstReceivedAt
            lastReceivedAt = firstReceivedAt
        }

        mutating func append(_ line: [UInt8], receivedAt: UTCTime, using compressor: PieceCompressor) {
            member.append(line, using: compressor)
            records += 1
            lastReceivedAt = max(lastReceivedAt, receivedAt)
        }
    }

    /// A delivery's completion and the objects of its batch that hold its records: indices into
    /// `ndjsonObjects` or `objects`, whichever the format fills.
    private struct Waiter {
        var completion: ArchiveCompletion
        var objects: [Int]
    }

    private struct Batch {
        /// ndjson: the objects, one per directory, and each directory's index among them.
        var ndjsonObjects: [(path: String, lines: ObjectLines)] = []
        var ndjsonIndex: [String: Int] = [:]
        /// raw: finished objects (payloads and sidecars).
        var objects: [Blob] = []
        var waiters: [Waiter] = []
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

    package init(route: String, settings: ArchiveSettings, store: any BlobWriter, namer: ObjectNamer) {
        self.route = route
        self.settings = settings
        self.store = store
        self.namer = namer
        compressor = PieceCompressor(level: settings.gzipLevel, concurrentWrites: settings.batch.concurrentWrites)
    }

    /// Adds a delivery's records (all-or-none) and calls `completion` once they are durable or failed.
    /// An empty list completes after the current batch, like any other waiter.
    package func submit(_ records: [Record], completion: @escaping ArchiveCompletion) {
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
            if state.pendingRecords > 0
                && (state.pendingRecords + count > settings.maxPendingRecords
                    || state.pendingBytes + size > settings.maxPendingBytes)
            {
                return (false, false, false)
            }
            state.pendingRecords += count
            state.pendingBytes += size
            if !state.open.isEmpty
                && (state.open.records + count > settings.batch.maxRecords
                    || state.open.bytes + size > settings.batch.maxBytes)
            {
                state.sealed.append(state.open)
                state.open = Batch()
            }
            if state.open.isEmpty { state.open.openedAt = .now }
            var mine: [Int] = []
            for item in encoded {
                let index: Int
                if let known = state.open.ndjsonIndex[item.path] {
                    index = known
                } else {
                    index = state.open.ndjsonObjects.count
                    state.open.ndjsonIndex[item.path] = index
                    state.open.ndjsonObjects.append((item.path, ObjectLines(firstReceivedAt: item.receivedAt)))
                }
                state.open.ndjsonObjects[index].lines.append(item.line, receivedAt: item.receivedAt, using: compressor)
                if !mine.contains(index) { mine.append(index) }
            }
            if !objects.isEmpty {
                mine = Array(state.open.objects.count..<(state.open.objects.count + objects.count))
                state.open.objects += objects
            }
            state.open.records += count
            state.open.bytes += size
            state.open.waiters.append(Waiter(completion: completion, objects: mine))
            if settings.batch.maxDelay == .zero || !state.sealed.isEmpty || state.draining {
                guard state.flushers < settings.batch.concurrentWrites else { return (true, false, false) }
                state.flushers += 1
                return (true, true, false)
            }
            if state.timerArmed || state.flushers >= settings.batch.concurrentWrites { return (true, false, false) }
            state.timerArmed = true
            return (true, false, true)
        }
        guard accepted else {
            let (records, bytes) = state.withLock { ($0.pendingRecords, $0.pendingBytes) }
            completion(.failure(.backlogFull(records: records, bytes: bytes)))
            return
        }
        if startFlusher { startFlushing() }
        if armTimer { armDelayTimer(after: settings.batch.maxDelay) }
    }

    /// Flushes everything still open (ignoring `maxDelay`) and returns when no write is pending.
    package func drain() async {
        let start = state.withLock { state -> Bool in
            state.draining = true
            guard state.flushers < settings.batch.concurrentWrites, !state.open.isEmpty else { return false }
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
        settings.time == .event ? eventTimeOrReceived(record) : record.receivedAt
    }

    private func eventTimeOrReceived(_ record: Record) -> UTCTime {
        record.eventTime.flatMap(UTCTime.init(rfc3339:)) ?? record.receivedAt
    }

    private func directory(for record: Record, time: UTCTime) -> String {
        settings.path.expand(route: record.route, source: record.source, time: time, attribute: record.attribute)
    }

    /// raw: `{path}/{name}.gz` (the payload) and `{path}/{name}.json` (the record without payload,
    /// plus `formatVersion`), both create-only. The path uses the event time, so a redelivery maps
    /// to the same keys even when it arrives hours later.
    private func rawObjects(_ record: Record) throws(GzipError) -> [Blob] {
        let base = directory(for: record, time: eventTimeOrReceived(record)) + "/" + ObjectNamer.rawName(record)
        let metadata = [
            "id": record.id, "source": record.source.rawValue, "route": record.route,
            "formatVersion": RecordEncoder.formatVersion,
        ]
        return [
            Blob(
                key: base + ".gz", bytes: try compressor.gzip([record.payload]),
                contentType: "application/octet-stream", contentEncoding: "gzip", metadata: metadata, createOnly: true),
            Blob(
                key: base + ".json", bytes: RecordEncoder.sidecar(record), contentType: "application/json",
                metadata: metadata, createOnly: true),
        ]
    }

    private func startFlushing() {
        Task { await self.flushLoop() }
    }

    /// Starts a flush loop once `delay` has passed, unless `concurrentWrites` loops already run
    /// (the first to finish its write takes the batch then).
    private func armDelayTimer(after delay: Duration) {
        Task {
            // Cancelled, the sleep would end early; the flush loop then finds the batch younger than
            // maxDelay and arms the timer again, so the batch is neither written early nor stranded.
            try? await Task.sleep(for: delay)
            let start = self.state.withLock { state -> Bool in
                state.timerArmed = false
                guard state.flushers < self.settings.batch.concurrentWrites, !state.open.isEmpty else { return false }
                state.flushers += 1
                return true
            }
            if start { self.startFlushing() }
        }
    }

    private func flushLoop() async {
        while let batch = nextBatch() {
            let failures = await write(batch)
            state.withLock { state in
                state.pendingRecords -= batch.records
                state.pendingBytes -= batch.bytes
            }
            for waiter in batch.waiters {
                if let failure = waiter.objects.lazy.compactMap({ failures[$0] }).first {
                    waiter.completion(.failure(.store(failure)))
                } else {
                    waiter.completion(.success(()))
                }
            }
        }
    }

    /// The next batch to write, or nil after ending this flush loop.
    private func nextBatch() -> Batch? {
        let (batch, rearm, idle) = state.withLock { state -> (Batch?, Duration?, [CheckedContinuation<Void, Never>]) in
            if !state.sealed.isEmpty { return (state.sealed.removeFirst(), nil, []) }
            if !state.open.isEmpty {
                let age = ContinuousClock.now - state.open.openedAt
                if settings.batch.maxDelay == .zero || state.draining || age >= settings.batch.maxDelay {
                    let batch = state.open
                    state.open = Batch()
                    return (batch, nil, [])
                }
                state.flushers -= 1
                if !state.timerArmed {
                    state.timerArmed = true
                    return (nil, settings.batch.maxDelay - age, [])
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

    /// Writes the batch's objects; returns the failures by object index (see `Waiter`).
    private func write(_ batch: Batch) async -> [Int: BlobStoreError] {
        var failures: [Int: BlobStoreError] = [:]
        var blobs: [(index: Int, blob: Blob)] = batch.objects.enumerated().map { ($0.offset, $0.element) }
        for (index, (path, object)) in batch.ndjsonObjects.enumerated() {
            let name = namer.batchName(firstReceivedAt: object.firstReceivedAt)
            do {
                blobs.append(
                    (
                        index,
                        Blob(
                            key: path + "/" + name, bytes: try await compressor.finish(object.member),
                            contentType: "application/x-ndjson", contentEncoding: "gzip",
                            metadata: [
                                "records": String(object.records),
                                "firstReceivedAt": object.firstReceivedAt.iso8601,
                                "lastReceivedAt": object.lastReceivedAt.iso8601,
                                "formatVersion": RecordEncoder.formatVersion,
                            ])
                    ))
            } catch {
                failures[index] = BlobStoreError(
                    store: store.name, key: path + "/" + name,
                    message: "gzip: \(error)", retryable: true)
            }
        }
        if blobs.count == 1 {
            if let failure = await Self.put(blobs[0].blob, to: store) { failures[blobs[0].index] = failure }
            return failures
        }
        return await withTaskGroup(of: (Int, BlobStoreError?).self) { group in
            for (index, blob) in blobs {
                group.addTask { [store] in (index, await Self.put(blob, to: store)) }
            }
            for await (index, failure) in group {
                if let failure { failures[index] = failure }
            }
            return failures
        }
    }

    /// The put's error, or nil once the blob is durable.
    private static func put(_ blob: Blob, to store: any BlobWriter) async -> BlobStoreError? {
        do throws(BlobStoreError) {
            _ = try await store.put(blob)
            return nil
        } catch {
            return error
        }
    }
}

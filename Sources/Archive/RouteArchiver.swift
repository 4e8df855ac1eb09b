import Foundation
import Dispatch
import PersistorStores
import Synchronization

/// Group commit for one route: records from many requests share one batch; a batch is written
/// as soon as fewer than `concurrentWrites` writes are in progress (or when `maxDelay` passes),
/// and each waiter is answered once every object holding its records is durable (or one failed:
/// a failed object fails only the deliveries with records in it).
public final class RouteArchiver: Sendable {
    public let route: String
    private let settings: ArchiveSettings
    private let store: any BlobWriter
    private let namer: ObjectNamer
    private let state = Mutex(State())
    /// Compressors kept between objects (zlib's state is costly to set up), one per concurrent
    /// user at most; a user takes one or makes its own.
    private let spareCompressors = Mutex<[GzipCompressor]>([])
    /// Raw-segment compressors kept between pieces: at most one per piece compressed at a time.
    private let spareSegmentCompressors = Mutex<[GzipCompressor]>([])
    private let maxSpareSegmentCompressors: Int

    /// One ndjson object of a batch. Its lines are cut into pieces of at least `pieceBytes`, and
    /// each full piece is compressed at once, in the background (a raw deflate segment, see
    /// `ParallelGzip`). When the batch is written, only the last piece is left to compress, so
    /// compression overlaps the previous batch's write and uses every processor.
    private struct ObjectLines {
        var compressedPieces: [PieceCompression] = []
        var openPiece: [[UInt8]] = []
        var openPieceBytes = 0
        /// The piece before the open one, whose end is the open piece's preset dictionary.
        var previousPiece: [[UInt8]] = []
        var records = 0
        var firstReceivedAt: UTCTime
        var lastReceivedAt: UTCTime

        init(firstReceivedAt: UTCTime) {
            self.firstReceivedAt = firstReceivedAt
            lastReceivedAt = firstReceivedAt
        }

        /// Adds a line; once the open piece holds `pieceBytes`, hands it to `compress`.
        mutating func append(_ line: [UInt8], receivedAt: UTCTime,
                             compress: (_ piece: [[UInt8]], _ previousPiece: [[UInt8]]) -> PieceCompression) {
            openPiece.append(line)
            openPieceBytes += line.count
            records += 1
            lastReceivedAt = max(lastReceivedAt, receivedAt)
            guard openPieceBytes >= RouteArchiver.pieceBytes else { return }
            compressedPieces.append(compress(openPiece, previousPiece))
            previousPiece = openPiece
            openPiece = []
            openPieceBytes = 0
        }
    }

    /// Bytes of lines that make a piece. Smaller pieces start compressing sooner but cost more
    /// priming (and 16 KiB pieces cost Pub/Sub throughput in measurements).
    static let pieceBytes = 64 * 1024
    /// Bytes before a piece that it is primed with (zlib's preset dictionary), so a piece's start
    /// compresses nearly as well as in one go. Priming costs about as much CPU as compressing
    /// them, so it is a fraction of a piece: 8 KiB kept the order-event ratio of whole batches.
    static let dictionaryBytes = 8 * 1024

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

    public init(route: String, settings: ArchiveSettings, store: any BlobWriter, namer: ObjectNamer) {
        self.route = route
        self.settings = settings
        self.store = store
        self.namer = namer
        maxSpareSegmentCompressors = ProcessInfo.processInfo.activeProcessorCount + settings.concurrentWrites
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
                state.open.ndjsonObjects[index].lines.append(
                    item.line, receivedAt: item.receivedAt, compress: { startCompressing($0, after: $1) })
                if !mine.contains(index) { mine.append(index) }
            }
            if !objects.isEmpty {
                mine = Array(state.open.objects.count..<(state.open.objects.count + objects.count))
                state.open.objects += objects
            }
            state.open.records += count
            state.open.bytes += size
            state.open.waiters.append(Waiter(completion: completion, objects: mine))
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

    /// raw: `{path}/{name}.gz` (the payload) and `{path}/{name}.json` (the record without payload,
    /// plus `formatVersion`), both create-only. The path uses the event time, so a redelivery maps
    /// to the same keys even when it arrives hours later.
    private func rawObjects(_ record: Record) throws(GzipError) -> [Blob] {
        let base = directory(for: record, time: eventTimeOrReceived(record)) + "/" + ObjectNamer.rawName(record)
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

    /// The last `bytes` bytes of `lines` joined.
    static func tail(of lines: [[UInt8]], bytes: Int) -> [UInt8] {
        var start = lines.endIndex, count = 0
        while start > lines.startIndex && count < bytes {
            start -= 1
            count += lines[start].count
        }
        var tail: [UInt8] = []
        tail.reserveCapacity(min(count, bytes))
        for index in start..<lines.endIndex {
            tail += index == start ? lines[index][max(0, count - bytes)...] : lines[index][...]
        }
        return tail
    }

    /// Compresses a full piece of an object in the background.
    private func startCompressing(_ piece: [[UInt8]], after previousPiece: [[UInt8]]) -> PieceCompression {
        let compression = PieceCompression(piece: piece, previousPiece: previousPiece)
        Task(priority: .utility) { self.compress(compression) }
        return compression
    }

    /// Compresses `compression`'s piece unless someone else has started it.
    private func compress(_ compression: PieceCompression) {
        guard let (piece, previousPiece) = compression.claim() else { return }
        compression.finish(Result { () throws(GzipError) in try compressPiece(piece, after: previousPiece, last: false) })
    }

    /// `piece` as a raw deflate segment, the `last` of its object or not.
    private func compressPiece(_ piece: [[UInt8]], after previousPiece: [[UInt8]], last: Bool) throws(GzipError) -> ParallelGzip.Segment {
        let compressor: GzipCompressor
        if let spare = spareSegmentCompressors.withLock({ $0.popLast() }) {
            compressor = spare
        } else {
            compressor = try GzipCompressor(level: settings.gzipLevel, rawSegments: true)
        }
        if !piece.isEmpty && !previousPiece.isEmpty {
            try compressor.setDictionary(Self.tail(of: previousPiece, bytes: Self.dictionaryBytes))
        }
        for line in piece { try compressor.append(line) }
        let segment = try compressor.finishSegment(last: last)
        spareSegmentCompressors.withLock { spares in
            if spares.count < maxSpareSegmentCompressors { spares.append(compressor) }
        }
        return segment
    }

    /// The gzip member of an object: one member from the lines if no piece was compressed ahead,
    /// else the pieces joined with its last one.
    private func gzipObject(_ object: ObjectLines) async throws(GzipError) -> [UInt8] {
        guard !object.compressedPieces.isEmpty else { return try gzip(object.openPiece) }
        // The last piece first, while pieces still running in the background go on.
        let last = try compressPiece(object.openPiece, after: object.previousPiece, last: true)
        var segments: [ParallelGzip.Segment] = []
        for piece in object.compressedPieces {
            // A piece whose background task has not started yet is compressed here, now.
            compress(piece)
            segments.append(try await piece.segment.get())
        }
        return ParallelGzip.assemble(segments + [last])
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

    /// Writes the batch's objects; returns the failures by object index (see `Waiter`).
    private func write(_ batch: Batch) async -> [Int: BlobStoreError] {
        var failures: [Int: BlobStoreError] = [:]
        var blobs: [(index: Int, blob: Blob)] = batch.objects.enumerated().map { ($0.offset, $0.element) }
        for (index, (path, object)) in batch.ndjsonObjects.enumerated() {
            let name = namer.batchName(firstReceivedAt: object.firstReceivedAt)
            do {
                blobs.append((index, Blob(key: path + "/" + name, bytes: try await gzipObject(object),
                                          contentType: "application/x-ndjson", contentEncoding: "gzip",
                                          metadata: ["records": String(object.records),
                                                     "firstReceivedAt": object.firstReceivedAt.iso8601,
                                                     "lastReceivedAt": object.lastReceivedAt.iso8601,
                                                     "formatVersion": RecordEncoder.formatVersion])))
            } catch {
                failures[index] = BlobStoreError(store: store.name, key: path + "/" + name,
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

/// A piece of an ndjson object to compress ahead: taken by whoever comes first, the background
/// task or the write that needs it, so a write never waits for a task that has not started.
final class PieceCompression: Sendable {
    private enum State {
        case pending(piece: [[UInt8]], previousPiece: [[UInt8]])
        case running(waiters: [CheckedContinuation<Result<ParallelGzip.Segment, GzipError>, Never>])
        case done(Result<ParallelGzip.Segment, GzipError>)
    }

    private let state: Mutex<State>

    init(piece: [[UInt8]], previousPiece: [[UInt8]]) {
        state = Mutex(.pending(piece: piece, previousPiece: previousPiece))
    }

    /// The piece and the one before it, to the first caller only.
    func claim() -> (piece: [[UInt8]], previousPiece: [[UInt8]])? {
        state.withLock { state in
            guard case .pending(let piece, let previousPiece) = state else { return nil }
            state = .running(waiters: [])
            return (piece, previousPiece)
        }
    }

    /// Records the claimer's result and hands it to everyone waiting.
    func finish(_ result: Result<ParallelGzip.Segment, GzipError>) {
        let waiters = state.withLock { state in
            guard case .running(let waiters) = state else { preconditionFailure("finish without claim") }
            state = .done(result)
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    /// The compressed piece, once whoever claimed it has finished.
    var segment: Result<ParallelGzip.Segment, GzipError> {
        get async {
            await withCheckedContinuation { continuation in
                let result = state.withLock { state -> Result<ParallelGzip.Segment, GzipError>? in
                    switch state {
                    case .done(let result): return result
                    case .running(var waiters):
                        waiters.append(continuation)
                        state = .running(waiters: waiters)
                        return nil
                    case .pending: preconditionFailure("wait before claim")
                    }
                }
                if let result { continuation.resume(returning: result) }
            }
        }
    }
}

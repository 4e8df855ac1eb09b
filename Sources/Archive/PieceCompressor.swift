import Foundation
import Synchronization

/// Compressors kept between uses, because zlib's state (about 270 KB) is costly to set up. A user
/// takes a spare or makes one, and hands it back unless `capacity` spares are kept already.
final class CompressorPool: Sendable {
    private let level: Int
    private let rawSegments: Bool
    private let capacity: Int
    private let spares = Mutex<[GzipCompressor]>([])

    init(level: Int, rawSegments: Bool, capacity: Int) {
        self.level = level
        self.rawSegments = rawSegments
        self.capacity = capacity
    }

    /// Runs `body` with a compressor no one else uses meanwhile. After an error the compressor is
    /// dropped, not kept: its stream may be left inside a member.
    func withCompressor<T>(_ body: (GzipCompressor) throws(GzipError) -> T) throws(GzipError) -> T {
        let compressor: GzipCompressor
        if let spare = spares.withLock({ $0.popLast() }) {
            compressor = spare
        } else {
            compressor = try GzipCompressor(level: level, rawSegments: rawSegments)
        }
        let result = try body(compressor)
        spares.withLock { spares in
            if spares.count < capacity { spares.append(compressor) }
        }
        return result
    }
}

/// Makes a route's gzip members. An ndjson object's lines are cut into pieces of at least
/// `pieceBytes`, and each full piece is compressed at once, in the background (a raw deflate
/// segment, see `ParallelGzip`). When the object is written only its last piece is left to
/// compress, so compression overlaps the previous batch's write and uses every processor.
final class PieceCompressor: Sendable {
    /// Bytes of lines that make a piece. Smaller pieces start compressing sooner but cost more
    /// priming (and 16 KiB pieces cost Pub/Sub throughput in measurements).
    static let pieceBytes = 64 * 1024
    /// Bytes before a piece that it is primed with (zlib's preset dictionary), so a piece's start
    /// compresses nearly as well as in one go. Priming costs about as much CPU as compressing
    /// them, so it is a fraction of a piece: 8 KiB kept the order-event ratio of whole batches.
    static let dictionaryBytes = 8 * 1024

    /// Whole members (raw payloads, objects smaller than a piece): one kept per concurrent write.
    private let members: CompressorPool
    /// Raw segments: one kept per piece compressed at a time, in the background (one per
    /// processor) or by a write.
    private let segments: CompressorPool

    init(level: Int, concurrentWrites: Int) {
        members = CompressorPool(level: level, rawSegments: false, capacity: concurrentWrites)
        segments = CompressorPool(
            level: level, rawSegments: true,
            capacity: ProcessInfo.processInfo.activeProcessorCount + concurrentWrites)
    }

    /// The lines of one object so far: the pieces handed to the background, and the open one.
    struct Member {
        fileprivate var compressedPieces: [PieceCompression] = []
        fileprivate var openPiece: [[UInt8]] = []
        fileprivate var openPieceBytes = 0
        /// The piece before the open one, whose end is the open piece's preset dictionary.
        fileprivate var previousPiece: [[UInt8]] = []

        /// Adds a line; once the open piece holds `pieceBytes`, starts compressing it.
        mutating func append(_ line: [UInt8], using compressor: PieceCompressor) {
            openPiece.append(line)
            openPieceBytes += line.count
            guard openPieceBytes >= PieceCompressor.pieceBytes else { return }
            compressedPieces.append(compressor.startCompressing(openPiece, after: previousPiece))
            previousPiece = openPiece
            openPiece = []
            openPieceBytes = 0
        }
    }

    /// One gzip member holding `chunks` in order.
    func gzip(_ chunks: [[UInt8]]) throws(GzipError) -> [UInt8] {
        try members.withCompressor { compressor throws(GzipError) in
            for chunk in chunks { try compressor.append(chunk) }
            return try compressor.finish()
        }
    }

    /// The gzip member of an object: one member from the lines if no piece was compressed ahead,
    /// else the pieces joined with its last one.
    func finish(_ member: Member) async throws(GzipError) -> [UInt8] {
        guard !member.compressedPieces.isEmpty else { return try gzip(member.openPiece) }
        // The last piece first, while pieces still running in the background go on.
        let last = try compressPiece(member.openPiece, after: member.previousPiece, last: true)
        var segments: [ParallelGzip.Segment] = []
        for piece in member.compressedPieces {
            // A piece whose background task has not started yet is compressed here, now.
            compress(piece)
            segments.append(try await piece.segment.get())
        }
        return ParallelGzip.assemble(segments + [last])
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
        try segments.withCompressor { compressor throws(GzipError) in
            if !piece.isEmpty && !previousPiece.isEmpty {
                try compressor.setDictionary(Self.tail(of: previousPiece, bytes: Self.dictionaryBytes))
            }
            for line in piece { try compressor.append(line) }
            return try compressor.finishSegment(last: last)
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

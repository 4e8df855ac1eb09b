import Foundation
import PersistorCore
import PersistorTestSupport
import Synchronization

/// A `BlobWriter` that keeps objects in memory, records every write, and can be told to be slow or
/// to fail, for the archive's batching logic and for a whole server run in process.
///
/// It keeps the `BlobWriter` contract: a put that returns has "stored" its blob, and `createOnly`
/// on an existing key stores nothing and answers `.alreadyExists`.
package final class InMemoryBlobWriter: BlobWriter {
    /// How a scripted put or probe fails; the key (for a put) is filled in.
    package struct Failure: Sendable {
        package var status: Int?
        package var code: String?
        package var message: String
        package var retryable: Bool

        package init(status: Int? = nil, code: String? = nil, message: String, retryable: Bool) {
            self.status = status
            self.code = code
            self.message = message
            self.retryable = retryable
        }

        /// What an overloaded cloud store answers: HTTP 503, worth retrying.
        package static let unavailable = Failure(status: 503, message: "down", retryable: true)
    }

    private struct Script {
        var putFailure: (failure: Failure, matches: @Sendable (Blob) -> Bool)?
        var probeFailure: Failure?
    }

    package let name: String
    /// How long each put takes before it succeeds or fails.
    package let delay: Duration
    private let script = Mutex(Script())
    private let written = Mutex<[Blob]>([])
    private let probeCount = Atomic<Int>(0)
    private let inFlight = Mutex((now: 0, most: 0))

    package init(name: String = "memory://", delay: Duration = .zero) {
        self.name = name
        self.delay = delay
    }

    // MARK: Scripting

    /// From now on, puts of blobs that `matches` selects (all by default) fail with `failure`.
    package func failPuts(_ failure: Failure = .unavailable, where matches: @escaping @Sendable (Blob) -> Bool = { _ in true }) {
        script.withLock { $0.putFailure = (failure, matches) }
    }

    /// From now on, probes fail with `failure`.
    package func failProbes(_ failure: Failure = .unavailable) {
        script.withLock { $0.probeFailure = failure }
    }

    /// Puts and probes succeed again.
    package func heal() {
        script.withLock { $0 = Script() }
    }

    // MARK: What happened

    /// Every blob stored, in the order the puts finished (failed puts and `.alreadyExists` are not in it).
    package var puts: [Blob] { written.withLock { $0 } }

    /// The blob stored last at `key`, if any.
    package func object(_ key: String) -> Blob? { written.withLock { $0.last { $0.key == key } } }

    /// Probes answered so far (failed or not).
    package var probes: Int { probeCount.load(ordering: .relaxed) }

    /// Puts in progress now, and the most there ever were at once.
    package var putsInFlight: (now: Int, most: Int) { inFlight.withLock { $0 } }

    /// The records of every NDJSON object stored (`archive.format: ndjson`), decompressed with the
    /// system gzip, in put order.
    package func records() throws -> [[String: Any]] {
        try puts.filter { $0.contentType == "application/x-ndjson" }.flatMap { blob in
            try systemGunzip(blob.bytes).split(separator: 0x0A).map { line in
                guard let record = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw TestFailure("a line of \(blob.key) is not a JSON object")
                }
                return record
            }
        }
    }

    // MARK: BlobWriter

    package func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        inFlight.withLock {
            $0.now += 1; $0.most = max($0.most, $0.now)
        }
        defer { inFlight.withLock { $0.now -= 1 } }
        if delay > .zero { try? await Task.sleep(for: delay) }
        if let scripted = script.withLock({ $0.putFailure }), scripted.matches(blob) {
            throw error(scripted.failure, key: blob.key)
        }
        return written.withLock { written in
            if blob.createOnly && written.contains(where: { $0.key == blob.key }) { return .alreadyExists }
            written.append(blob)
            return .created
        }
    }

    package func probe() async throws(BlobStoreError) {
        probeCount.add(1, ordering: .relaxed)
        if let failure = script.withLock({ $0.probeFailure }) { throw error(failure, key: nil) }
    }

    private func error(_ failure: Failure, key: String?) -> BlobStoreError {
        BlobStoreError(
            store: name, key: key, status: failure.status, code: failure.code,
            message: failure.message, retryable: failure.retryable)
    }
}

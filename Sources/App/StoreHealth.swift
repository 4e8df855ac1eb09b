import Logging
import PersistorCore
import PersistorStores
import Synchronization

/// Tracks whether the store accepts writes: a failed write marks it failing (readiness 503) and
/// starts a probe every few seconds until the store answers again, so `/readyz` recovers without
/// traffic.
final class StoreHealth: Sendable {
    private let store: any BlobWriter
    private let readiness: Readiness
    private let logger: Logger
    private let probing = Atomic<Bool>(false)
    static let probeInterval: Duration = .seconds(2)

    init(store: any BlobWriter, readiness: Readiness, logger: Logger) {
        self.store = store
        self.readiness = readiness
        self.logger = logger
    }

    /// One probe now (at start-up).
    func check() async {
        do {
            try await store.probe()
        } catch {
            failed(error)
        }
    }

    func succeeded() {
        if readiness.storeHealthy(true) { logger.notice("store recovered", metadata: ["store": "\(store.name)"]) }
    }

    func failed(_ error: BlobStoreError) {
        if readiness.storeHealthy(false, reason: Self.reason(error)) {
            logger.error("store failing; readiness is 503 until it recovers", metadata: ["store": "\(store.name)", "cause": "\(error)"])
        }
        guard !probing.exchange(true, ordering: .relaxed) else { return }
        Task {
            while readiness.state == .storeFailing {
                try? await Task.sleep(for: Self.probeInterval)
                do throws(BlobStoreError) {
                    try await store.probe()
                    succeeded()
                } catch {
                    readiness.storeHealthy(false, reason: Self.reason(error))
                }
            }
            probing.store(false, ordering: .relaxed)
        }
    }

    /// The failure as `/readyz` tells it: what failed and why, without the store's name or key.
    static func reason(_ error: BlobStoreError) -> String {
        var text = error.message
        if let status = error.status { text += " (HTTP \(status))" }
        if let code = error.code { text += " (\(code))" }
        return text
    }
}

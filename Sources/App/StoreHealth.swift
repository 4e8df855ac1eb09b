import Logging
import PersistorCore
import PersistorStores
import ServiceLifecycle

/// Tracks whether the store accepts writes: a failed write marks it failing (readiness 503), and
/// `run()` then probes every few seconds until the store answers again, so `/readyz` recovers
/// without traffic. A `Service` of the process's `ServiceGroup`: the probing ends at shutdown.
final class StoreHealth: Service {
    private let store: any BlobWriter
    private let readiness: Readiness
    private let logger: Logger
    /// One element per newly failing store; the buffer of one coalesces failures the loop has not seen yet.
    private let failures: AsyncStream<Void>
    private let failureSignal: AsyncStream<Void>.Continuation
    static let probeInterval: Duration = .seconds(2)

    init(store: any BlobWriter, readiness: Readiness, logger: Logger) {
        self.store = store
        self.readiness = readiness
        self.logger = logger
        (failures, failureSignal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
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
        failureSignal.yield()
    }

    /// Probes while the store is failing; returns at graceful shutdown.
    func run() async {
        await cancelWhenGracefulShutdown {
            for await _ in self.failures {
                while self.readiness.state == .storeFailing {
                    do {
                        try await Task.sleep(for: Self.probeInterval)
                    } catch {
                        return  // cancelled: shutting down
                    }
                    do throws(BlobStoreError) {
                        try await self.store.probe()
                        self.succeeded()
                    } catch {
                        self.readiness.storeHealthy(false, reason: Self.reason(error))
                    }
                }
            }
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

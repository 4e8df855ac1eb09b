import Foundation
import Logging
import PersistorCore
import PersistorStores
import PersistorTestSupport
import Testing

@testable import PersistorApp

@Suite struct StoreHealthTests {
    // docs/stores.md#local-filesystem: a local store with less free space than a batch needs is not ready.
    @Test func aNearlyFullLocalStoreIsNotReadyAndSaysWhy() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        let readiness = Readiness()
        readiness.set(.ready)
        let health = StoreHealth(store: store, readiness: readiness, logger: Logger(label: "test"))
        store.minimumFreeBytes = Int.max
        await health.check()
        #expect(readiness.state == .storeFailing)
        let reason = try #require(readiness.storeFailure)
        #expect(reason.contains("free on the file system, below the") && reason.contains("No space left on device"), "\(reason)")
        #expect(!reason.contains(dir.path), "the reason does not name the store's path")
        // Once there is room again, the probe loop makes it ready without traffic.
        let probing = Task { await health.run() }
        defer { probing.cancel() }
        store.minimumFreeBytes = 0
        health.failed(BlobStoreError(store: store.name, key: nil, message: "write failed", retryable: true))
        let deadline = ContinuousClock.now + .seconds(10)
        while readiness.state != .ready && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(readiness.state == .ready)
    }
}

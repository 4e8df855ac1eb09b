import Foundation
@testable import PersistorStores
import Testing

/// The per-attempt deadline holds even when the operation ignores cancellation, as
/// FoundationNetworking's `data(for:)` sometimes does (found by StoreFaultTests' slow store).
@Suite struct StoreHTTPDeadlineTests {
    @Test func anOperationThatIgnoresCancellationStillTimesOut() async throws {
        let start = ContinuousClock.now
        do {
            _ = try await withDeadline(.milliseconds(200)) {
                await withCheckedContinuation { continuation in
                    DispatchQueue.global().asyncAfter(deadline: .now() + 3) { continuation.resume() }
                }
                return 1
            }
            Issue.record("the deadline did not fire")
        } catch let error as URLError {
            #expect(error.code == .timedOut)
        }
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func aFastOperationReturnsItsResultAndErrors() async throws {
        #expect(try await withDeadline(.seconds(5)) { 42 } == 42)
        await #expect(throws: URLError.self) {
            try await withDeadline(.seconds(5)) { () async throws -> Int in throw URLError(.cannotConnectToHost) }
        }
    }
}

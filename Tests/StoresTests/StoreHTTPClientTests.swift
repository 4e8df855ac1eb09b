import Foundation
import PersistorCore
import PersistorStores
import PersistorTestSupport
import PersistorTesting
import Testing

/// Answers from `steps`, one per attempt (then 200), and records what was sent.
private func scripted(_ steps: [ScriptedTransport.Step]) -> ScriptedTransport {
    ScriptedTransport(steps, afterScript: StoreHTTPResponse(status: 200))
}

// Generous time limits: the scripted answers come at once, and a test process running hundreds of
// tests on two cores can delay a task's wake-up by seconds.
private let fast = StoreRetryPolicy(
    attemptTimeout: .seconds(10), totalTimeout: .seconds(30), maxAttempts: 4,
    initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(5))
private let request = StoreHTTPRequest(method: "PUT", url: URL(string: "http://127.0.0.1:1/b/k")!)

@Suite struct StoreHTTPClientTests {
    @Test func retriesServerErrorsAndNetworkFailuresThenReturnsTheAnswer() async throws {
        let transport = scripted([.status(503), .refuse, .status(500), .status(201)])
        let client = StoreHTTPClient(store: "test://s", transport: transport, policy: fast)
        var builds = 0
        let response = try await client.send(key: "k") {
            builds += 1; return request
        }
        #expect(response.status == 201)
        #expect(transport.requests.count == 4)
        #expect(builds == 4, "each attempt builds (and signs) its request afresh")
    }

    @Test(arguments: [400, 401, 403, 404, 409, 412])
    func doesNotRetryClientErrors(status: Int) async throws {
        let transport = scripted([.status(status), .status(201)])
        let client = StoreHTTPClient(store: "test://s", transport: transport, policy: fast)
        let response = try await client.send(key: "k") { request }
        #expect(response.status == status)
        #expect(transport.requests.count == 1)
    }

    @Test(arguments: [408, 429])
    func retriesTimeoutAndThrottling(status: Int) async throws {
        let transport = scripted([.status(status), .status(201)])
        let client = StoreHTTPClient(store: "test://s", transport: transport, policy: fast)
        #expect(try await client.send(key: "k") { request }.status == 201)
    }

    @Test func givesUpAfterMaxAttemptsWithTheLastStatusAndCode() async throws {
        let transport = scripted(Array(repeating: .status(503, headers: ["x-code": "ServerBusy"]), count: 10))
        let client = StoreHTTPClient(store: "test://s", transport: transport, policy: fast)
        do {
            _ = try await client.send(key: "a/b", errorCode: { $0.header("x-code") }) { request }
            Issue.record("expected a failure")
        } catch {
            #expect(error.status == 503)
            #expect(error.code == "ServerBusy")
            #expect(error.key == "a/b")
            #expect(error.store == "test://s")
            #expect(error.retryable)
        }
        #expect(transport.requests.count == 4)
    }

    @Test func staysWithinTheTotalBudget() async throws {
        let transport = scripted(Array(repeating: .status(503, headers: ["retry-after": "1"]), count: 10))
        let policy = StoreRetryPolicy(
            attemptTimeout: .seconds(1), totalTimeout: .milliseconds(1500), maxAttempts: 10,
            initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(5))
        let client = StoreHTTPClient(store: "test://s", transport: transport, policy: policy)
        let started = ContinuousClock.now
        await #expect(throws: BlobStoreError.self) { _ = try await client.send(key: "k") { request } }
        // It never sleeps past the budget. Ignoring it would take about 9 s (nine Retry-After
        // waits); the slack is for a loaded test process, which can wake a task seconds late.
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect((1...2).contains(transport.requests.count), "Retry-After: 1 leaves room for at most one retry in 1.5 s")
    }

    @Test func anUnreachableHostIsARetryableNetworkError() async throws {
        let port = try PersistorProcess.freePort()
        let client = StoreHTTPClient(store: "test://s", transport: URLSessionTransport(), policy: fast)
        do {
            _ = try await client.send(key: "k") { StoreHTTPRequest(method: "PUT", url: URL(string: "http://127.0.0.1:\(port)/x")!) }
            Issue.record("expected a failure")
        } catch {
            #expect(error.retryable)
            #expect(error.status == nil)
            #expect(error.description.contains("connection refused"), "\(error)")
        }
    }
}

private struct CountingSource: CredentialSource {
    let fetches = LockedBox(0)
    let lifetime: TimeInterval
    func fetch() async throws(BlobStoreError) -> Expiring<String> {
        let n = fetches.update {
            $0 += 1; return $0
        }
        try? await Task.sleep(for: .milliseconds(50))
        return Expiring("t\(n)", expiresAt: Date().addingTimeInterval(lifetime))
    }
}

@Suite struct CredentialCacheTests {
    @Test func concurrentCallersShareOneFetchAndReuseTheToken() async throws {
        let source = CountingSource(lifetime: 3600)
        let cache = CredentialCache(source: source)
        let tokens = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.get() } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(tokens) == ["t1"])
        #expect(try await cache.get() == "t1")
        #expect(source.fetches.get() == 1)
    }

    @Test func refreshesATokenNearExpiry() async throws {
        let source = CountingSource(lifetime: 200)  // inside the 300 s refresh margin
        let cache = CredentialCache(source: source)
        #expect(try await cache.get() == "t1")
        #expect(try await cache.get() == "t2")
    }
}

import Foundation
import PersistorCore

/// How long one store operation may take, and how it retries.
///
/// The defaults keep a whole operation (all attempts and back-offs) under 8 s, inside Pub/Sub's
/// default 10 s acknowledgement deadline, so a sender gets a 503 before it gives up on us.
package struct StoreRetryPolicy: Sendable, Equatable {
    /// One request's limit.
    package var attemptTimeout: Duration
    /// The whole operation's limit, retries and back-off included.
    package var totalTimeout: Duration
    package var maxAttempts: Int
    /// Back-off before the second attempt; doubles each time up to `maxBackoff`, with full jitter.
    package var initialBackoff: Duration
    package var maxBackoff: Duration

    package init(
        attemptTimeout: Duration = .seconds(5), totalTimeout: Duration = .seconds(8), maxAttempts: Int = 4,
        initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(2)
    ) {
        self.attemptTimeout = attemptTimeout
        self.totalTimeout = totalTimeout
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }
}

/// Sends a store's REST requests with the retry policy: network errors, 408, 429 and 5xx are
/// retried with exponential back-off and jitter while the budget lasts; every other answer is
/// returned to the caller, who decides what it means (e.g. 412 on a create-only write).
package struct StoreHTTPClient: Sendable {
    /// The store's name for errors and logs, e.g. `gs://bucket/prefix`.
    package let store: String
    package let transport: any StoreHTTPTransport
    package let policy: StoreRetryPolicy

    package init(store: String, transport: any StoreHTTPTransport, policy: StoreRetryPolicy = StoreRetryPolicy()) {
        self.store = store
        self.transport = transport
        self.policy = policy
    }

    /// Whether an answer is worth another attempt: 408, 429 and 5xx.
    package static func isRetryable(_ response: StoreHTTPResponse) -> Bool {
        response.status == 408 || response.status == 429 || response.status >= 500
    }

    /// Sends the request `makeRequest` builds — again for each attempt, so dates, tokens and
    /// signatures are fresh — and returns the first answer that is not retryable.
    ///
    /// - Parameters:
    ///   - key: the object key, for errors.
    ///   - errorCode: extracts the service's error code from an answer (for errors and logs).
    ///   - retryable: which answers to retry; defaults to `isRetryable`.
    /// - Throws: the last failure when the attempts or the time budget run out, or whatever
    ///   `makeRequest` throws (e.g. a credential that cannot be obtained).
    package func send(
        key: String?,
        errorCode: @Sendable (StoreHTTPResponse) -> String? = { _ in nil },
        retryable: @Sendable (StoreHTTPResponse) -> Bool = StoreHTTPClient.isRetryable,
        _ makeRequest: () async throws(BlobStoreError) -> StoreHTTPRequest
    ) async throws(BlobStoreError) -> StoreHTTPResponse {
        let clock = ContinuousClock()
        let deadline = clock.now + policy.totalTimeout
        var attempt = 0
        var backoff = policy.initialBackoff
        while true {
            attempt += 1
            let request = try await makeRequest()
            // Building the request may have taken time (a token fetch): it counts against the budget.
            let remaining = clock.now.duration(to: deadline)
            guard remaining > .zero else {
                throw BlobStoreError(
                    store: store, key: key, message: "request timed out (the time budget ran out before attempt \(attempt))",
                    retryable: true)
            }
            let lastFailure: BlobStoreError
            var retryAfter: Duration?
            do {
                let response = try await transport.send(request, timeout: min(policy.attemptTimeout, remaining))
                if !retryable(response) { return response }
                lastFailure = failure(key: key, response: response, code: errorCode(response), retryable: true)
                retryAfter = response.header("retry-after").flatMap { Int($0) }.map { Duration.seconds($0) }
            } catch {
                lastFailure = BlobStoreError(store: store, key: key, message: Self.describe(error), retryable: true)
            }
            // Full jitter: anywhere between zero and the current back-off step.
            var pause = Duration.nanoseconds(Int64.random(in: 0...max(0, backoff.nanoseconds)))
            if let retryAfter { pause = max(pause, retryAfter) }
            backoff = min(backoff * 2, policy.maxBackoff)
            guard attempt < policy.maxAttempts, clock.now + pause < deadline - .milliseconds(50) else {
                var exhausted = lastFailure
                exhausted.message += " (gave up after \(attempt) attempt\(attempt == 1 ? "" : "s"))"
                throw exhausted
            }
            try? await Task.sleep(for: pause)
        }
    }

    /// An error for an answer the caller does not accept.
    package func failure(key: String?, response: StoreHTTPResponse, code: String?, retryable: Bool? = nil) -> BlobStoreError {
        BlobStoreError(
            store: store, key: key, status: response.status, code: code,
            message: "the store answered HTTP \(response.status)",
            retryable: retryable ?? Self.isRetryable(response))
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? URLError {
            switch error.code {
            case .timedOut: return "request timed out"
            case .cannotConnectToHost: return "connection refused"
            case .networkConnectionLost: return "connection lost"
            case .cannotFindHost: return "host not found"
            default: return "network error (URLError \(error.code.rawValue))"
            }
        }
        return "network error: \(error)"
    }
}

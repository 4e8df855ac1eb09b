import Foundation
import PersistorCore

/// A credential (a bearer token, a set of temporary keys) and when it stops being valid.
package struct Expiring<Value: Sendable>: Sendable {
    package var value: Value
    package var expiresAt: Date

    package init(_ value: Value, expiresAt: Date) {
        self.value = value
        self.expiresAt = expiresAt
    }
}

/// Where credentials come from: a service-account exchange, a metadata server, a managed identity, IMDS.
package protocol CredentialSource<Credential>: Sendable {
    associatedtype Credential: Sendable
    func fetch() async throws(BlobStoreError) -> Expiring<Credential>
}

/// Caches a source's credential and refreshes it before it expires. Concurrent callers that find
/// no usable credential share one fetch.
package actor CredentialCache<Credential: Sendable> {
    private let source: any CredentialSource<Credential>
    /// A credential this close to expiry is refreshed instead of used.
    private let refreshMargin: TimeInterval
    private let now: @Sendable () -> Date
    private var current: Expiring<Credential>?
    private var inFlight: Task<Expiring<Credential>, any Error>?

    package init(
        source: any CredentialSource<Credential>, refreshMargin: TimeInterval = 300,
        now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.source = source
        self.refreshMargin = refreshMargin
        self.now = now
    }

    /// Forgets the cached credential (e.g. after the store answered 401), so the next `get` fetches.
    package func invalidate() {
        current = nil
    }

    package func get() async throws(BlobStoreError) -> Credential {
        if let current, current.expiresAt.timeIntervalSince(now()) > refreshMargin { return current.value }
        let task: Task<Expiring<Credential>, any Error>
        if let inFlight {
            task = inFlight
        } else {
            let source = self.source
            task = Task { () async throws -> Expiring<Credential> in try await source.fetch() }
            inFlight = task
        }
        do {
            let fetched = try await task.value
            if inFlight == task { inFlight = nil }
            current = fetched
            return fetched.value
        } catch {
            if inFlight == task { inFlight = nil }
            throw (error as? BlobStoreError)
                ?? BlobStoreError(store: "credentials", key: nil, message: "credential fetch failed: \(error)", retryable: true)
        }
    }
}

import Foundation

/// A bearer token and when it stops being valid.
public struct AccessToken: Sendable {
    public var value: String
    public var expiresAt: Date

    public init(value: String, expiresAt: Date) {
        self.value = value
        self.expiresAt = expiresAt
    }
}

/// Where tokens come from: a service-account exchange, a metadata server, a managed identity.
public protocol AccessTokenSource: Sendable {
    func fetchToken() async throws(BlobStoreError) -> AccessToken
}

/// Caches a source's token and refreshes it before it expires. Concurrent callers that find no
/// usable token share one fetch.
public actor AccessTokenCache {
    private let source: any AccessTokenSource
    /// A token this close to expiry is refreshed instead of used.
    private let refreshMargin: TimeInterval
    private let now: @Sendable () -> Date
    private var current: AccessToken?
    private var inFlight: Task<AccessToken, any Error>?

    public init(source: any AccessTokenSource, refreshMargin: TimeInterval = 300,
                now: @escaping @Sendable () -> Date = Date.init) {
        self.source = source
        self.refreshMargin = refreshMargin
        self.now = now
    }

    public func token() async throws(BlobStoreError) -> String {
        if let current, current.expiresAt.timeIntervalSince(now()) > refreshMargin { return current.value }
        let task: Task<AccessToken, any Error>
        if let inFlight {
            task = inFlight
        } else {
            let source = self.source
            task = Task { () async throws -> AccessToken in try await source.fetchToken() }
            inFlight = task
        }
        do {
            let token = try await task.value
            if inFlight == task { inFlight = nil }
            current = token
            return token.value
        } catch {
            if inFlight == task { inFlight = nil }
            throw (error as? BlobStoreError)
                ?? BlobStoreError(store: "credentials", key: nil, message: "token fetch failed: \(error)", retryable: true)
        }
    }
}

import Logging
import Synchronization

/// The signing keys of one JWKS URL, shared by every route that uses it.
///
/// - The first lookup fetches. While the set is fresh, lookups answer synchronously.
/// - Freshness comes from `Cache-Control: max-age` (minus `Age`); without it, 1 hour. Lifetimes are
///   clamped to 1 s … 24 h.
/// - Once 80% of the lifetime has passed, the next lookup starts a background refresh and is still
///   answered at once from the current set (refresh is driven by traffic, no timers).
/// - After the lifetime, a lookup waits for a refetch; if that fails the old keys are used (stale
///   keys are kept until a new set arrives).
/// - An unknown `kid` joins an in-flight fetch, or starts one refresh — at most one such refresh per
///   `minimumRefreshInterval` — and is refused if the kid is still unknown afterwards.
/// - Concurrent callers share a single in-flight fetch.
/// - After a failed fetch, no new fetch starts for `failureBackoff`; meanwhile lookups answer from the
///   old keys, or `.unavailable` (→ 503) when there are none.
package final class JWKSCache: Sendable {
    package let url: String

    enum Lookup: Sendable {
        case keys([VerificationKey])
        case unknownKid
        case unavailable
    }

    static let defaultLifetime: Duration = .seconds(3600)
    static let minimumLifetime: Duration = .seconds(1)
    static let maximumLifetime: Duration = .seconds(86_400)

    private struct State {
        var keys: JWKSet?
        var freshUntil: ContinuousClock.Instant
        var refreshAfter: ContinuousClock.Instant
        var inFlight = false
        var waiters: [@Sendable (JWKSet?) -> Void] = []
        var lastUnknownKidRefresh: ContinuousClock.Instant?
        var lastFailure: ContinuousClock.Instant?
    }

    private let state: Mutex<State>
    private let fetcher: any JWKSFetcher
    private let minimumRefreshInterval: Duration
    private let failureBackoff: Duration
    private let logger: Logger

    init(
        url: String, fetcher: any JWKSFetcher, minimumRefreshInterval: Duration, failureBackoff: Duration,
        logger: Logger
    ) {
        self.url = url
        self.fetcher = fetcher
        self.minimumRefreshInterval = minimumRefreshInterval
        self.failureBackoff = failureBackoff
        self.logger = logger
        let now = ContinuousClock.now
        self.state = Mutex(State(freshUntil: now, refreshAfter: now))
    }

    /// Whether a key set has been fetched at some point (it may be stale).
    package var hasKeys: Bool { state.withLock { $0.keys != nil } }

    /// Starts a fetch when nothing is cached and none is running (e.g. at startup, so the first
    /// request does not wait). Returns at once.
    package func prefetch() {
        let start = state.withLock { state -> Bool in
            guard state.keys == nil, !state.inFlight else { return false }
            state.inFlight = true
            return true
        }
        if start { launchFetch() }
    }

    /// Finds the keys for `kid`. Calls `completion` exactly once: synchronously when the answer is
    /// known from the cache, otherwise when a fetch completes.
    func lookup(kid: String, completion: @escaping @Sendable (Lookup) -> Void) {
        let now = ContinuousClock.now
        let waiter: @Sendable (JWKSet?) -> Void = { set in completion(Self.resolve(set, kid: kid)) }
        let (answer, start) = state.withLock { state -> (Lookup?, Bool) in
            let failedRecently = state.lastFailure.map { now - $0 < failureBackoff } ?? false

            func join() -> (Lookup?, Bool) {
                state.waiters.append(waiter)
                if state.inFlight { return (nil, false) }
                state.inFlight = true
                return (nil, true)
            }

            guard let keys = state.keys else {
                if !state.inFlight && failedRecently { return (.unavailable, false) }
                return join()
            }
            if now >= state.freshUntil {
                // Expired: revalidate first, unless a fetch just failed (then the stale keys serve).
                if !state.inFlight && failedRecently { return (Self.resolve(keys, kid: kid), false) }
                return join()
            }
            var start = false
            if now >= state.refreshAfter, !state.inFlight, !failedRecently {
                state.inFlight = true
                start = true
            }
            if let known = keys.keys[kid] { return (.keys(known), start) }
            if state.inFlight {
                // An unknown kid waits for the running fetch (which may be the one just started).
                state.waiters.append(waiter)
                return (nil, start)
            }
            let allowed = state.lastUnknownKidRefresh.map { now - $0 >= minimumRefreshInterval } ?? true
            guard allowed, !failedRecently else { return (.unknownKid, false) }
            state.lastUnknownKidRefresh = now
            return join()
        }
        if start { launchFetch() }
        if let answer { completion(answer) }
    }

    private static func resolve(_ set: JWKSet?, kid: String) -> Lookup {
        guard let set else { return .unavailable }
        if let keys = set.keys[kid] { return .keys(keys) }
        return .unknownKid
    }

    private func launchFetch() {
        Task { [self] in
            let result: Result<(JWKSet, Duration?), any Error>
            do {
                let (body, maxAge) = try await fetcher.fetch(url)
                result = .success((try JWKSet.parse(body), maxAge))
            } catch {
                result = .failure(error)
            }
            complete(result)
        }
    }

    private func complete(_ result: Result<(JWKSet, Duration?), any Error>) {
        let now = ContinuousClock.now
        let (waiters, keys, hadKeys) = state.withLock { state -> ([@Sendable (JWKSet?) -> Void], JWKSet?, Bool) in
            let hadKeys = state.keys != nil
            state.inFlight = false
            switch result {
            case .success(let (set, maxAge)):
                let lifetime = min(max(maxAge ?? Self.defaultLifetime, Self.minimumLifetime), Self.maximumLifetime)
                state.keys = set
                state.freshUntil = now + lifetime
                state.refreshAfter = now + lifetime / 5 * 4
                state.lastFailure = nil
            case .failure:
                state.lastFailure = now
            }
            let waiters = state.waiters
            state.waiters = []
            return (waiters, state.keys, hadKeys)
        }
        switch result {
        case .success(let (set, maxAge)):
            logger.debug(
                "JWKS fetched",
                metadata: [
                    "url": .string(url), "keys": .stringConvertible(set.count), "skipped": .stringConvertible(set.skipped),
                    "maxAge": .string(maxAge.map { "\($0.components.seconds)s" } ?? "none"),
                ])
        case .failure(let error):
            logger.warning(
                "JWKS fetch failed",
                metadata: [
                    "url": .string(url), "error": .string(String(describing: error)),
                    "keeping": .string(hadKeys ? "previous keys" : "no keys"),
                ])
        }
        for waiter in waiters { waiter(keys) }
    }
}

/// Shares one `JWKSCache` per URL across routes.
package final class JWKSRegistry: Sendable {
    private let fetcher: any JWKSFetcher
    private let minimumRefreshInterval: Duration
    private let failureBackoff: Duration
    private let logger: Logger
    private let caches = Mutex<[String: JWKSCache]>([:])

    /// - Parameters:
    ///   - minimumRefreshInterval: at most one unknown-`kid` refresh per URL in this interval.
    ///   - failureBackoff: after a failed fetch, no new fetch for this long (requests meanwhile use
    ///     the old keys, or get 503 when there are none).
    package init(
        fetcher: any JWKSFetcher = URLSessionJWKSFetcher(),
        minimumRefreshInterval: Duration = .seconds(60),
        failureBackoff: Duration = .seconds(5),
        logger: Logger
    ) {
        self.fetcher = fetcher
        self.minimumRefreshInterval = minimumRefreshInterval
        self.failureBackoff = failureBackoff
        self.logger = logger
    }

    package func cache(for url: String) -> JWKSCache {
        caches.withLock { caches in
            if let cache = caches[url] { return cache }
            let cache = JWKSCache(
                url: url, fetcher: fetcher, minimumRefreshInterval: minimumRefreshInterval,
                failureBackoff: failureBackoff, logger: logger)
            caches[url] = cache
            return cache
        }
    }
}

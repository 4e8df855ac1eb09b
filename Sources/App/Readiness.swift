import Synchronization

/// What `/readyz` reports: ready only after start-up, while the store works, and before shutdown.
package final class Readiness: Sendable {
    package enum State: Int, Sendable {
        case starting, ready, storeFailing, draining
    }

    private let value = Atomic<Int>(State.starting.rawValue)
    private let failure = Mutex<String?>(nil)

    package init() {}

    package var state: State { State(rawValue: value.load(ordering: .relaxed)) ?? .starting }

    package func set(_ state: State) { value.store(state.rawValue, ordering: .relaxed) }

    /// Why the store failed last (for `/readyz` while `storeFailing`).
    package var storeFailure: String? { failure.withLock { $0 } }

    /// Moves between `ready` and `storeFailing` unless the server is starting or draining;
    /// a failure's `reason` is kept for `storeFailure` either way. Returns true when the state changed.
    @discardableResult
    package func storeHealthy(_ healthy: Bool, reason: String? = nil) -> Bool {
        if !healthy { failure.withLock { $0 = reason } }
        let (from, to) = healthy ? (State.storeFailing, State.ready) : (State.ready, State.storeFailing)
        return value.compareExchange(expected: from.rawValue, desired: to.rawValue, ordering: .relaxed).exchanged
    }
}

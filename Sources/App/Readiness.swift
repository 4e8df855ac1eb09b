import Synchronization

/// What `/readyz` reports: ready only after start-up, while the store works, and before shutdown.
public final class Readiness: Sendable {
    public enum State: Int, Sendable {
        case starting, ready, storeFailing, draining
    }

    private let value = Atomic<Int>(State.starting.rawValue)

    public init() {}

    public var state: State { State(rawValue: value.load(ordering: .relaxed)) ?? .starting }

    public func set(_ state: State) { value.store(state.rawValue, ordering: .relaxed) }

    /// Moves between `ready` and `storeFailing` unless the server is starting or draining.
    /// Returns true when the state changed.
    @discardableResult
    public func storeHealthy(_ healthy: Bool) -> Bool {
        let (from, to) = healthy ? (State.storeFailing, State.ready) : (State.ready, State.storeFailing)
        return value.compareExchange(expected: from.rawValue, desired: to.rawValue, ordering: .relaxed).exchanged
    }
}

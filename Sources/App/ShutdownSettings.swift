/// What SIGTERM does with time: keep serving for `drainDelay` while `/readyz` answers 503 (so a
/// load balancer moves traffic away first), then finish within `shutdownGrace` (docs/operations.md).
package struct ShutdownSettings: Sendable, Equatable {
    /// After SIGTERM, how long the listener keeps accepting while `/readyz` answers 503 (may be 0).
    package var drainDelay: Duration
    /// Upper bound on the rest of the shutdown (answer in-flight requests, flush batches).
    package var shutdownGrace: Duration

    package init(drainDelay: Duration = .zero, shutdownGrace: Duration = .seconds(10)) {
        self.drainDelay = drainDelay
        self.shutdownGrace = shutdownGrace
    }
}

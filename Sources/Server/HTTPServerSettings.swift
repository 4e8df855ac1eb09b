import Foundation

/// The listener: address, limits and timeouts; the `server` section of docs/configuration.md#server.
package struct HTTPServerSettings: Sendable, Equatable {
    package var host: String
    package var port: Int
    package var limits: HTTPParserLimits
    /// Time allowed from a request's first byte until its head is complete (408 after).
    package var headerTimeout: Duration
    /// Longest pause while receiving a body (408 after).
    package var bodyTimeout: Duration
    /// How long an idle keep-alive connection stays open, and the longest a blocked write may stall.
    package var idleTimeout: Duration
    /// Connections beyond this are answered 503 and closed …
    package var maxConnections: Int
    /// … except this many more, which serve only `GET` (or `HEAD`) of `probePaths`, one request
    /// each: a flood of connections must not fail the health checks and get the instance restarted.
    package var probeConnections: Int
    package var probePaths: Set<Substring>
    /// Requests a connection may have in progress (pipelining) before the server stops reading it.
    package var maxPipelinedRequests: Int
    /// Request body bytes all connections together may hold (as they are received, until the
    /// request is answered); a request whose body would exceed it is answered 503 + `Retry-After`
    /// and its connection closed. Counted as bytes arrive, never from an announced length, so
    /// senders that announce large bodies and trickle them cannot lock others out.
    package var maxInFlightBodyBytes: Int
    /// Serial queues that run connections (default: one per core).
    package var loops: Int
    /// HTTP/2 streams a connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    package var maxConcurrentStreams: Int

    package init(
        host: String = "0.0.0.0", port: Int = 8080, limits: HTTPParserLimits = HTTPParserLimits(),
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30),
        idleTimeout: Duration = .seconds(60), maxConnections: Int = 4096,
        probeConnections: Int = 8, probePaths: Set<Substring> = [],
        maxPipelinedRequests: Int = 64, maxInFlightBodyBytes: Int = 256 << 20,
        loops: Int = max(1, ProcessInfo.processInfo.activeProcessorCount), maxConcurrentStreams: Int = 100
    ) {
        self.host = host
        self.port = port
        self.limits = limits
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.probeConnections = probeConnections
        self.probePaths = probePaths
        self.maxPipelinedRequests = maxPipelinedRequests
        self.maxInFlightBodyBytes = maxInFlightBodyBytes
        self.loops = loops
        self.maxConcurrentStreams = maxConcurrentStreams
    }
}

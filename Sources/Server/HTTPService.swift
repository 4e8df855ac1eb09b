/// What the server calls for each request. Both methods run on the connection's queue and
/// must not block; `respond` may be called later from any thread, exactly once.
public protocol HTTPService: Sendable {
    /// Called when a request's head has arrived, before its body is read. Returning a response
    /// ends the request there (the body is not read and the connection closes afterwards), e.g. for
    /// an unknown path or a body over the route's limit.
    func check(_ head: HTTPRequestHead) -> HTTPResponse?

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
}

/// Server limits and timeouts (design §2); each is a configuration value.
public struct HTTPServerSettings: Sendable {
    public var host: String
    public var port: Int
    public var limits: HTTPParserLimits
    /// Time allowed from a request's first byte until its head is complete (408 after).
    public var headerTimeout: Duration
    /// Longest pause while receiving a body (408 after).
    public var bodyTimeout: Duration
    /// How long an idle keep-alive connection stays open, and the longest a blocked write may stall.
    public var idleTimeout: Duration
    /// Connections beyond this are answered 503 and closed.
    public var maxConnections: Int
    /// Requests a connection may have in progress (pipelining) before the server stops reading it.
    public var maxPipelinedRequests: Int
    /// Request body bytes all connections together may hold (received or announced by
    /// `Content-Length`, until answered); a request that would exceed it is answered 503 +
    /// `Retry-After` before its body is read. A chunked request counts as `limits.maxBodyBytes`.
    public var maxInFlightBodyBytes: Int
    /// Serial queues that run connections (default: one per core).
    public var loops: Int
    /// HTTP/2 streams a connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    public var maxConcurrentStreams: Int

    public init(host: String = "0.0.0.0", port: Int = 8080, limits: HTTPParserLimits = HTTPParserLimits(),
                headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30),
                idleTimeout: Duration = .seconds(60), maxConnections: Int = 4096,
                maxPipelinedRequests: Int = 64, maxInFlightBodyBytes: Int = 256 << 20,
                loops: Int = max(1, ProcessInfo.processInfo.activeProcessorCount), maxConcurrentStreams: Int = 100) {
        self.host = host
        self.port = port
        self.limits = limits
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
        self.maxPipelinedRequests = maxPipelinedRequests
        self.maxInFlightBodyBytes = maxInFlightBodyBytes
        self.loops = loops
        self.maxConcurrentStreams = maxConcurrentStreams
    }
}

import Foundation

import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A non-blocking HTTP/1.1 (and h2c) server on Dispatch: one accept source, and connections spread
/// round-robin over a few serial queues (`EventLoop`s, each watching its sockets through one
/// `SocketPoller`), so a request is parsed, handled and answered on one queue without thread hops.
package final class HTTPServer: Sendable {
    package let settings: HTTPServerSettings
    let service: any HTTPService
    private let loops: [EventLoop]
    private let acceptQueue = DispatchQueue(label: "persistor.accept")
    /// The accept source; touched only on `acceptQueue`.
    private let listener = ListenerSource()
    private let connections = Atomic<Int>(0)
    private let nextLoop = Atomic<Int>(0)
    private let bodyBytesInFlight = Atomic<Int>(0)
    private let draining = Atomic<Bool>(false)
    /// Told `true` when the last open connection closes (`waitForConnections`).
    private let allClosedWaiters = Mutex<[AsyncStream<Bool>.Continuation]>([])
    private let onProtocolError: (@Sendable (Int, String) -> Void)?

    /// `onProtocolError` is told about each malformed or timed-out request (status, reason).
    package init(
        settings: HTTPServerSettings, service: any HTTPService,
        onProtocolError: (@Sendable (Int, String) -> Void)? = nil
    ) {
        self.settings = settings
        self.service = service
        self.loops = (0..<max(1, settings.loops)).map { EventLoop(index: $0) }
        self.onProtocolError = onProtocolError
    }

    /// Binds and starts serving; returns the bound port (useful with port 0).
    @discardableResult
    package func start() throws -> Int {
        let fd = try Socket.listen(host: settings.host, port: settings.port)
        let port = Socket.boundPort(fd)
        for loop in loops { loop.queue.async { loop.start() } }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: acceptQueue)
        source.setEventHandler { @Sendable [self] in self.acceptAll(fd) }
        source.setCancelHandler { @Sendable in close(fd) }
        acceptQueue.sync { listener.source = source }
        source.resume()
        return port
    }

    /// A drain has begun: connections accepted now serve one request (HTTP/1.1), or get the
    /// shutdown notice at once (HTTP/2).
    var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Open connections right now.
    package var connectionCount: Int { connections.load(ordering: .relaxed) }

    /// Closes the listening socket; open connections carry on.
    package func stopAccepting() {
        acceptQueue.sync {
            listener.source?.cancel()
            listener.source = nil
        }
    }

    /// Announces the shutdown while the server still serves: every HTTP/1.1 answer from now on
    /// carries `Connection: close`, and HTTP/2 connections get a GOAWAY shutdown notice (RFC 9113
    /// §6.8), so senders move to other instances meanwhile (as nginx and Envoy do).
    package func announceShutdown() {
        drain(.announce)
    }

    /// Asks every connection to finish what it has started and close (idle ones close at once);
    /// HTTP/2 connections get the final GOAWAY.
    package func drainConnections() {
        drain(.finish)
    }

    private func drain(_ step: DrainStep) {
        draining.store(true, ordering: .relaxed)
        for loop in loops {
            loop.enqueue { for connection in loop.allConnections { connection.drain(step) } }
        }
    }

    /// Waits until every connection has closed or the deadline passes; true if all closed.
    package func waitForConnections(until deadline: ContinuousClock.Instant) async -> Bool {
        let (outcomes, outcome) = AsyncStream.makeStream(of: Bool.self, bufferingPolicy: .bufferingOldest(1))
        allClosedWaiters.withLock { $0.append(outcome) }
        if connectionCount == 0 { outcome.yield(true) }  // the last one closed before we asked
        let timer = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            outcome.yield(false)
        }
        defer { timer.cancel() }
        var closed = false
        for await allClosed in outcomes {
            closed = allClosed
            break
        }
        if closed { for loop in loops { loop.queue.async { loop.stop() } } }
        return closed
    }

    private func acceptAll(_ listenerFD: Int32) {
        while let fd = Socket.accept(listenerFD) {
            let count = connections.add(1, ordering: .relaxed).newValue
            if count > settings.maxConnections + settings.probeConnections {
                connections.subtract(1, ordering: .relaxed)
                Self.refuse(fd)
                continue
            }
            let loop = loops[nextLoop.add(1, ordering: .relaxed).newValue % loops.count]
            let connection = HTTP1Connection(fd: fd, loop: loop, server: self, probesOnly: count > settings.maxConnections)
            loop.enqueue { connection.start() }
        }
    }

    /// Answers 503 to a connection over the limit, best effort, and closes it.
    private static func refuse(_ fd: Int32) {
        let body = HTTPResponse.tooManyConnectionsText
        let text =
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = text.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }

    /// Takes `bytes` more for a body that already holds `held` from the in-flight body budget;
    /// false (and nothing taken) if they don't fit. A body that is alone in flight always fits,
    /// so one request larger than the budget is still served when nothing else is.
    func reserveBodyBytes(_ bytes: Int, holding held: Int) -> Bool {
        let total = bodyBytesInFlight.add(bytes, ordering: .relaxed).newValue
        if total > settings.maxInFlightBodyBytes && total != held + bytes {
            bodyBytesInFlight.subtract(bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    func releaseBodyBytes(_ bytes: Int) {
        if bytes > 0 { bodyBytesInFlight.subtract(bytes, ordering: .relaxed) }
    }

    func connectionClosed() {
        guard connections.subtract(1, ordering: .relaxed).newValue == 0 else { return }
        allClosedWaiters.withLock { waiters in
            for waiter in waiters { waiter.yield(true) }
            waiters.removeAll()
        }
    }

    func protocolError(status: Int, reason: String) {
        onProtocolError?(status, reason)
    }
}

extension HTTPResponse {
    static let tooManyConnectionsText = "too many connections\n"
    /// The answer on a probe connection to anything but a probe.
    static let tooManyConnections = HTTPResponse.text(
        503, "too many connections",
        headers: HTTPHeaders([("Retry-After", "1")]))
    /// The answer when the in-flight body budget is spent.
    static let bodyBudgetSpent = HTTPResponse.text(
        503, "server busy: too many request body bytes in flight; retry later",
        headers: HTTPHeaders([("Retry-After", "1")]))
}

private final class ListenerSource: @unchecked Sendable {
    var source: (any DispatchSourceRead)?
}

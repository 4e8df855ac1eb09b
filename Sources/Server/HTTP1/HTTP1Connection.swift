import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP/1.1 connection: reads and parses requests, hands them to the service, and writes the
/// responses back in request order (pipelining). Every mutable field is touched only on the
/// loop's queue; handlers capture `self` strongly and are cleared when the connection closes.
/// An HTTP/2 preface at the start, or an `Upgrade: h2c` first request, hands the socket to an
/// `HTTP2Connection`.
final class HTTP1Connection: @unchecked Sendable, SocketChannelOwner {
    private(set) var channel: SocketChannel
    private let loop: EventLoop
    let server: HTTPServer
    private var parser: HTTPRequestParser
    /// Which request is being read, whether more may follow, and the answers due; it takes every
    /// decision, and this class does what it returns.
    private var state: HTTP1ConnectionState<HTTPServer>
    private var closed: Bool { channel.cancelled }
    /// Takes the socket over once this connection has closed its channel.
    private var successor: HTTP2Connection?

    /// `probesOnly`: accepted beyond `maxConnections`, it serves one `GET` of a probe path, nothing
    /// else (not HTTP/2).
    init(fd: Int32, loop: EventLoop, server: HTTPServer, probesOnly: Bool = false) {
        self.channel = SocketChannel(fd: fd, loop: loop)
        self.loop = loop
        self.server = server
        self.parser = HTTPRequestParser(limits: server.settings.limits)
        self.state = HTTP1ConnectionState(settings: server.settings, budget: server, probesOnly: probesOnly, now: .now)
    }

    func start() {
        loop.register(self)
        channel.start(
            readable: { @Sendable hungUp in self.readable(hungUp: hungUp) },
            writable: { @Sendable in self.writeOutput() },
            closed: { @Sendable in self.socketClosed() })
        // Accepted while the server drains: serve one request, answered with `Connection: close`.
        if server.isDraining { _ = state.drain(.announce, parserIdle: parser.isIdle, outputFlushed: channel.isFlushed) }
    }

    // MARK: Reading

    private func readable(hungUp: Bool) {
        guard !closed else { return }
        channel.noteReadable(hungUp: hungUp)
        let capacity = loop.readBuffer.count
        while !closed && !channel.readSuspended {
            switch SocketChannel.read(channel.fd, into: &loop.readBuffer) {
            case .bytes(let n):
                let now = MonotonicTime.now
                switch loop.readBuffer.withUnsafeBytes({ state.received(UnsafeRawBufferPointer(rebasing: $0[0..<n]), now: now) }) {
                case .parse:
                    loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    processInput(now: now)
                case .parseAfter(let held):
                    parser.feed(held)
                    loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    processInput(now: now)
                case .hold, .discard:
                    break
                case .handOff(let received):
                    handOff(to: HTTP2Connection(fd: channel.fd, loop: loop, server: server, received: received))
                case .close:
                    finalClose()
                    return
                }
                if !channel.mayHaveMoreInput(afterReading: n, capacity: capacity) { return }
            case .end:
                switch state.peerClosed(outputFlushed: channel.isFlushed) {
                case .finishAnswers: channel.suspendReading()
                case .close: finalClose()
                }
                return
            case .wouldBlock:
                return
            case .failed:
                finalClose()
                return
            }
        }
    }

    /// Stops this connection; `successor` starts on the socket once the channel has closed.
    private func handOff(to successor: HTTP2Connection) {
        self.successor = successor
        finalClose()
    }

    private func processInput(now: MonotonicTime) {
        while state.mayParse && !channel.isOverHighWater {
            let event: HTTPParserEvent?
            do {
                event = try parser.next()
            } catch {
                fail(status: error.status, reason: error.reason)
                return
            }
            guard let event else { break }
            switch consume event {
            case .head(let head):
                switch state.headReceived(head, now: now) {
                case .check(let id):
                    service.check(head) { verdict in
                        self.loop.execute { self.admitted(id, verdict) }
                    }
                    perform(state.checkReturned(id: id, now: now))
                case .answer(let stopReading):
                    perform(.answer(stopReading: stopReading))
                }
            case .request(let request):
                var action = state.requestReceived(bodyBytes: request.body.count, parserIdle: parser.isIdle)
                if case .upgrade(let settings) = action {
                    if let upgraded = HTTP2Connection(
                        fd: channel.fd, loop: loop, server: server, upgrading: request,
                        settings: settings, unsent: channel.unsentOutput)
                    {
                        handOff(to: upgraded)
                        return
                    }
                    action = state.upgradeDeclined(bodyBytes: request.body.count)
                }
                switch action {
                case .none(let stopReading):
                    if stopReading { channel.suspendReading() }
                case .handle(let id, let stopReading):
                    if stopReading { channel.suspendReading() }
                    service.handle(request) { response in
                        self.loop.execute { self.complete(id, response) }
                    }
                case .answer(let stopReading):
                    if stopReading { channel.suspendReading() }
                    flushResponses()
                case .upgrade:
                    preconditionFailure("an upgrade is offered once")
                }
            }
        }
        switch state.inputProcessed(
            bodyBytesReceived: parser.bodyBytesReceived, parserIdle: parser.isIdle,
            overHighWater: channel.isOverHighWater, now: now)
        {
        case .none:
            break
        case .pauseReading:
            // Read no more until the verdict arrives, or the answers are taken (bounded memory).
            channel.suspendReading()
        case .answer:
            channel.suspendReading()
            flushResponses()
        }
    }

    /// The service's verdict on a head; applied now unless `check` is still running (the verdict
    /// is then applied when it returns).
    private func admitted(_ id: Int, _ verdict: HTTPResponse?) {
        let now = MonotonicTime.now
        guard !closed, let action = state.admissionDecided(id: id, verdict: verdict, now: now) else { return }
        perform(action)
        if state.acceptsRequests { channel.resumeReading() }
        processInput(now: now)
    }

    private func perform(_ action: HTTP1ConnectionState<HTTPServer>.AdmissionAction) {
        switch action {
        case .wait, .readBody:
            break
        case .sendContinue:
            channel.output.append(contentsOf: HTTPResponseEncoder.continueLine)
            writeOutput()
        case .answer(let stopReading):
            // No further request will be parsed: input is no longer read (until the lingering
            // close), so a peer that keeps sending after an error or a refusal costs nothing.
            if stopReading { channel.suspendReading() }
            flushResponses()
        }
    }

    private var service: any HTTPService { server.service }

    /// Answers a protocol error after the responses already due, then closes.
    private func fail(status: Int, reason: String) {
        state.fail(status: status, reason: reason)
        channel.suspendReading()
        server.protocolError(status: status, reason: reason)
        flushResponses()
    }

    // MARK: Writing

    private func complete(_ id: Int, _ response: HTTPResponse) {
        guard !closed, state.responseReady(id: id, response) else { return }
        flushResponses()
    }

    private func flushResponses() {
        while let next = state.nextResponse() {
            loop.encoder.encode(
                next.response, headRequest: next.isHead, keepAlive: next.keepAlive, http10: next.http10,
                into: &channel.output)
            if !next.keepAlive { channel.suspendReading() }
            if next.continueAfter { channel.output.append(contentsOf: HTTPResponseEncoder.continueLine) }
        }
        writeOutput()
    }

    private func writeOutput() {
        guard !closed else { return }
        switch channel.writeOutput() {
        case .flushed: break
        case .blocked: return
        case .failed: finalClose(); return
        }
        switch state.outputFlushed(parserIdle: parser.isIdle, readSuspended: channel.readSuspended) {
        case .none:
            break
        case .resumeReading:
            channel.resumeReading()
            processInput(now: .now)
        case .close:
            finalClose()
        case .linger:
            // Half-closes and keeps reading (discarding) briefly, so the peer receives the last
            // answer instead of a reset caused by unread input.
            channel.shutdownWriting()
            channel.resumeReading()
        }
    }

    // MARK: Timeouts and shutdown

    func checkProtocolTimeouts(now: MonotonicTime, settings: HTTPServerSettings) {
        switch state.timerFired(now: now, parserIdle: parser.isIdle, outputFlushed: channel.isFlushed) {
        case .none: break
        case .fail(let status, let reason): fail(status: status, reason: reason)
        case .close: finalClose()
        }
    }

    func drain(_ step: DrainStep) {
        guard !closed else { return }
        switch state.drain(step, parserIdle: parser.isIdle, outputFlushed: channel.isFlushed) {
        case .none: break
        case .stopReading: channel.suspendReading()
        case .close: finalClose()
        }
    }

    func finalClose() {
        guard !closed else { return }
        channel.cancel()
        state.close()
    }

    /// The channel was cancelled: the connection goes, and the socket is closed or handed on.
    private func socketClosed() {
        loop.unregister(self)
        if let successor {
            // The socket, and its place in the connection count, pass to HTTP/2.
            successor.start()
            return
        }
        channel.closeSocket()
        server.connectionClosed()
    }
}

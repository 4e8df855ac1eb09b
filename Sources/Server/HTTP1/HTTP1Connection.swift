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
    private struct Slot {
        let id: Int
        var response: HTTPResponse?
        let isHead: Bool
        let keepAlive: Bool
        let http10: Bool
        var needsContinue = false
        /// The response was sent from `check`; the request's `.request` event is ignored.
        var answeredEarly = false
        var closeAfter = false
        /// Taken from the server's in-flight body budget; given back when the slot goes.
        var reservedBytes = 0
    }

    /// A request whose head the service is still checking (authentication may wait for signing
    /// keys); its body is not read until the service admits it.
    private struct PendingAdmission {
        var slot: Slot
        let expectsContinue: Bool
        let hasBody: Bool
        /// The service's verdict once it has arrived: nil admits, a response refuses.
        var verdict: HTTPResponse??
    }

    /// Input discarded while lingering before the connection is closed anyway: enough for the last
    /// answer to reach a peer that is still sending, not a way to burn CPU at line rate.
    static let lingerDiscardLimit = 1 << 20

    private(set) var channel: SocketChannel
    private let loop: EventLoop
    let server: HTTPServer
    private var parser: HTTPRequestParser
    private var slots: [Slot] = []
    private var nextSlotID = 0

    /// False once no further request will be parsed (error, `Connection: close`, draining).
    private var acceptingRequests = true
    private var closeAfterWrite = false
    private var admission: PendingAdmission?
    /// `processInput` is on the stack: a verdict that arrives synchronously is only recorded.
    private var processing = false
    private var lingerDiscarded = 0
    private var peerClosed = false
    private var closed: Bool { channel.cancelled }
    private var drainRequested = false
    /// The request being received asked for `Connection: close`.
    private var stopAfterCurrent = false
    /// The first bytes while they match the HTTP/2 preface; nil once the connection is HTTP/1.
    private var prefaceBytes: [UInt8]? = []
    /// The decoded `HTTP2-Settings` of a first request that asks to upgrade to h2c.
    private var upgradeSettings: [UInt8]?
    /// Takes the socket over once this connection has closed its channel.
    private var successor: HTTP2Connection?

    private var lastActivity = MonotonicTime.now
    private var headStartedAt: MonotonicTime?
    private var bodyProgressAt: MonotonicTime?

    /// Accepted beyond `maxConnections`: one `GET` of a probe path, nothing else (not HTTP/2).
    private let probesOnly: Bool

    init(fd: Int32, loop: EventLoop, server: HTTPServer, probesOnly: Bool = false) {
        self.channel = SocketChannel(fd: fd, loop: loop)
        self.loop = loop
        self.server = server
        self.parser = HTTPRequestParser(limits: server.settings.limits)
        self.probesOnly = probesOnly
        if probesOnly { prefaceBytes = nil }
    }

    func start() {
        loop.register(self)
        channel.start(readable: { @Sendable hungUp in self.readable(hungUp: hungUp) },
                      writable: { @Sendable in self.writeOutput() },
                      closed: { @Sendable in self.socketClosed() })
        // Accepted while the server drains: serve one request, answered with `Connection: close`.
        if server.isDraining { drainRequested = true }
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
                lastActivity = now
                if channel.lingerSince != nil {
                    lingerDiscarded += n
                    if lingerDiscarded > Self.lingerDiscardLimit { finalClose(); return }
                } else {
                    if bodyProgressAt != nil { bodyProgressAt = now }
                    if prefaceBytes == nil || !holdPreface(count: n) {
                        loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                        processInput()
                    }
                }
                if !channel.mayHaveMoreInput(afterReading: n, capacity: capacity) { return }
            case .end:
                peerClosed = true
                if channel.lingerSince != nil { finalClose(); return }
                // A half-closed client still gets the answers to the requests it completed.
                abandonIncompleteRequest()
                stopAcceptingRequests()
                if slots.isEmpty && channel.isFlushed { finalClose() }
                return
            case .wouldBlock:
                return
            case .failed:
                finalClose()
                return
            }
        }
    }

    /// At connection start, holds bytes back from the parser while they match the HTTP/2 preface
    /// and hands the socket to HTTP/2 once it is complete. False when the connection is HTTP/1
    /// (bytes held earlier have then gone to the parser; the caller feeds the new ones).
    private func holdPreface(count: Int) -> Bool {
        let held = prefaceBytes ?? []
        let match = loop.readBuffer.withUnsafeBytes {
            HTTP2Handoff.matchPreface(held: held, chunk: UnsafeRawBufferPointer(rebasing: $0[0..<count]))
        }
        switch match {
        case .mismatch:
            prefaceBytes = nil
            parser.feed(held)
            return false
        case .partial:
            prefaceBytes = held + loop.readBuffer[0..<count]
            // A preface trickled byte by byte is a head in progress like any other.
            if headStartedAt == nil { headStartedAt = .now }
        case .complete:
            handOff(to: HTTP2Connection(fd: channel.fd, loop: loop, server: server, received: held + loop.readBuffer[0..<count]))
        }
        return true
    }

    /// Stops this connection; `successor` starts on the socket once the channel has closed.
    private func handOff(to successor: HTTP2Connection) {
        self.successor = successor
        finalClose()
    }

    private func processInput() {
        processing = true
        defer { processing = false }
        while acceptingRequests && admission == nil && slots.count < server.settings.maxPipelinedRequests
                && !channel.isOverHighWater {
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
                headStartedAt = nil
                bodyProgressAt = MonotonicTime.now
                let slot = Slot(id: nextSlotID, isHead: head.method == "HEAD", keepAlive: head.keepAlive,
                                http10: head.versionMinor == 0)
                nextSlotID += 1
                if slot.id == 0 && !probesOnly { upgradeSettings = HTTP2Handoff.upgradeSettings(head) }
                if !head.keepAlive || probesOnly { stopAfterCurrent = true }
                if probesOnly && !isProbe(head) {
                    admission = PendingAdmission(slot: slot, expectsContinue: false, hasBody: Self.hasBody(head),
                                                 verdict: .some(.tooManyConnections))
                    applyAdmission()
                    continue
                }
                // The service decides from the head alone (route, limits, credentials) before any
                // body byte is read, so a refused sender cannot make the server hold its body.
                admission = PendingAdmission(slot: slot, expectsContinue: head.expectsContinue,
                                             hasBody: Self.hasBody(head), verdict: nil)
                let id = slot.id
                service.check(head) { verdict in
                    self.loop.execute { self.admitted(id, verdict) }
                }
                applyAdmission()
            case .request(let request):
                bodyProgressAt = nil
                guard let slot = slots.last else { continue }
                if drainRequested || stopAfterCurrent { stopAcceptingRequests() }
                if slot.answeredEarly { continue }
                if slot.id == 0, let settings = upgradeSettings, acceptingRequests && slots.count == 1 && parser.isIdle,
                   let upgraded = HTTP2Connection(fd: channel.fd, loop: loop, server: server, upgrading: request,
                                                  settings: settings, unsent: channel.unsentOutput) {
                    handOff(to: upgraded)
                    return
                }
                guard reserveBody(upTo: request.body.count) else {
                    slots[slots.count - 1].response = .bodyBudgetSpent
                    flushResponses()
                    continue
                }
                let id = slot.id
                service.handle(request) { response in
                    self.loop.execute { self.complete(id, response) }
                }
            }
        }
        guard acceptingRequests else { return }
        if bodyProgressAt != nil && admission == nil && !reserveBody(upTo: parser.bodyBytesReceived) {
            refuseBodyInProgress(.bodyBudgetSpent)
            return
        }
        if admission != nil || slots.count >= server.settings.maxPipelinedRequests || channel.isOverHighWater {
            // Read no more until the verdict arrives, or the answers are taken (bounded memory).
            channel.suspendReading()
        }
        if bodyProgressAt == nil && !parser.isIdle {
            if headStartedAt == nil { headStartedAt = MonotonicTime.now }
        } else {
            headStartedAt = nil
        }
    }

    /// The service's verdict on a head; applied now unless `processInput` is running (it applies
    /// it itself when the verdict came synchronously).
    private func admitted(_ id: Int, _ verdict: HTTPResponse?) {
        guard !closed, admission?.slot.id == id, admission?.verdict == nil else { return }
        admission?.verdict = .some(verdict)
        guard !processing else { return }
        applyAdmission()
        if acceptingRequests && !peerClosed && channel.lingerSince == nil { channel.resumeReading() }
        processInput()
    }

    /// Acts on the pending head's verdict, if it has arrived: a refusal is answered at once (the
    /// body is never read), an admitted request waits for its body.
    private func applyAdmission() {
        guard let pending = admission, let verdict = pending.verdict else { return }
        admission = nil
        if let refusal = verdict {
            answerEarly(pending.slot, refusal, hasBody: pending.hasBody)
            return
        }
        var slot = pending.slot
        bodyProgressAt = pending.hasBody ? MonotonicTime.now : bodyProgressAt
        if pending.expectsContinue {
            if slots.isEmpty { channel.output.append(contentsOf: HTTPResponseEncoder.continueLine) } else { slot.needsContinue = true }
        }
        slots.append(slot)
        if pending.expectsContinue && slots.count == 1 { writeOutput() }
    }

    /// Takes from the in-flight body budget what the request in progress holds beyond its
    /// reservation: body bytes as they arrive, never the length a sender merely announces.
    private func reserveBody(upTo bytes: Int) -> Bool {
        guard let last = slots.indices.last, !slots[last].answeredEarly else { return true }
        let more = bytes - slots[last].reservedBytes
        guard more > 0 else { return true }
        guard server.reserveBodyBytes(more, holding: slots[last].reservedBytes) else { return false }
        slots[last].reservedBytes += more
        return true
    }

    /// Answers the request whose body is arriving without reading the rest; the connection closes.
    private func refuseBodyInProgress(_ response: HTTPResponse) {
        guard var slot = slots.popLast() else { return }
        server.releaseBodyBytes(slot.reservedBytes)
        slot.reservedBytes = 0
        answerEarly(slot, response, hasBody: true)
    }

    private var service: any HTTPService { server.service }

    /// Answers a request from its head alone; its body (if any) is not read, so the connection
    /// cannot be reused.
    private func answerEarly(_ slot: Slot, _ response: HTTPResponse, hasBody: Bool) {
        var slot = slot
        slot.response = response
        slot.answeredEarly = true
        if hasBody {
            slot.closeAfter = true
            stopAcceptingRequests()
            bodyProgressAt = nil
        }
        slots.append(slot)
        flushResponses()
    }

    private func isProbe(_ head: HTTPRequestHead) -> Bool {
        (head.method == "GET" || head.method == "HEAD") && server.settings.probePaths.contains(head.path)
    }

    /// Whether a body follows the head (chunked, or a non-zero `Content-Length`).
    private static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers["transfer-encoding"] != nil { return true }
        return head.headers["content-length"].flatMap { Int($0) }.map { $0 > 0 } ?? false
    }

    /// No further request will be parsed; input is no longer read (until the lingering close),
    /// so a peer that keeps sending after an error or `Connection: close` costs nothing.
    private func stopAcceptingRequests() {
        acceptingRequests = false
        admission = nil
        channel.suspendReading()
    }

    /// Removes slots and gives their body reservations back.
    private func removeSlots(_ range: Range<Int>) {
        var released = 0
        for slot in slots[range] { released += slot.reservedBytes }
        slots.removeSubrange(range)
        server.releaseBodyBytes(released)
    }

    /// Forgets the slot of a request whose body will never complete (error, timeout, peer gone),
    /// so the answers before it can still be written and the connection can close.
    private func abandonIncompleteRequest() {
        defer { bodyProgressAt = nil }
        // A head still being checked has no slot yet.
        if admission != nil {
            admission = nil
            return
        }
        guard bodyProgressAt != nil, let last = slots.last, last.response == nil else { return }
        removeSlots(slots.count - 1..<slots.count)
    }

    /// Answers a protocol error after the responses already due, then closes.
    private func fail(status: Int, reason: String) {
        abandonIncompleteRequest()
        stopAcceptingRequests()
        headStartedAt = nil
        bodyProgressAt = nil
        var slot = Slot(id: nextSlotID, isHead: false, keepAlive: false, http10: false)
        nextSlotID += 1
        slot.response = .text(status, reason)
        slot.closeAfter = true
        slots.append(slot)
        server.protocolError(status: status, reason: reason)
        flushResponses()
    }

    // MARK: Writing

    private func complete(_ id: Int, _ response: HTTPResponse) {
        guard !closed, !slots.isEmpty else { return }
        let index = id - slots[0].id
        guard index >= 0, index < slots.count, slots[index].response == nil else { return }
        slots[index].response = response
        flushResponses()
    }

    private func flushResponses() {
        // The response is moved out of its slot (which goes next), not copied.
        while !slots.isEmpty, let response = slots[0].response.take() {
            let slot = slots[0]
            let last = slots.count == 1 && !acceptingRequests
            let keepAlive = slot.keepAlive && !slot.closeAfter && !last && !drainRequested
            loop.encoder.encode(response, headRequest: slot.isHead, keepAlive: keepAlive, http10: slot.http10, into: &channel.output)
            if !keepAlive {
                closeAfterWrite = true
                removeSlots(0..<slots.count)
                break
            }
            removeSlots(0..<1)
            if slots.first?.needsContinue == true {
                slots[0].needsContinue = false
                channel.output.append(contentsOf: HTTPResponseEncoder.continueLine)
            }
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
        if closeAfterWrite || (!acceptingRequests && slots.isEmpty) {
            closeGracefully()
        } else if acceptingRequests && admission == nil && channel.readSuspended && !peerClosed
                    && slots.count < server.settings.maxPipelinedRequests {
            channel.resumeReading()
            processInput()
        }
    }

    // MARK: Timeouts and shutdown

    func checkProtocolTimeouts(now: MonotonicTime, settings: HTTPServerSettings) {
        if let since = headStartedAt, now - since > settings.headerTimeout {
            fail(status: 408, reason: "request header timeout")
            return
        }
        if let since = bodyProgressAt, now - since > settings.bodyTimeout {
            fail(status: 408, reason: "request body timeout")
            return
        }
        if slots.isEmpty && parser.isIdle && channel.isFlushed && now - lastActivity > settings.idleTimeout {
            finalClose()
        }
    }

    /// `announce`: every answer from now on carries `Connection: close`, so keep-alive senders
    /// reconnect (to another instance, once the load balancer has taken this one out) instead of
    /// meeting a closed socket later. `finish`: stops taking new requests; idle connections close
    /// now, busy ones after their answers.
    func drain(_ step: DrainStep) {
        guard !closed else { return }
        drainRequested = true
        guard step == .finish else { return }
        if parser.isIdle && bodyProgressAt == nil && admission == nil {
            stopAcceptingRequests()
            if slots.isEmpty && channel.isFlushed { finalClose() }
        }
    }

    /// Half-closes and keeps reading (discarding) briefly, so the peer receives the last answer
    /// instead of a reset caused by unread input.
    private func closeGracefully() {
        guard !closed else { return }
        if peerClosed || parser.isIdle && bodyProgressAt == nil && parser.bufferedByteCount == 0 {
            finalClose()
            return
        }
        channel.shutdownWriting()
        channel.resumeReading()
    }

    func finalClose() {
        guard !closed else { return }
        channel.cancel()
        admission = nil
        removeSlots(0..<slots.count)
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

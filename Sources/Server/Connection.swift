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
final class Connection: @unchecked Sendable, SocketChannelOwner {
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

    private(set) var channel: SocketChannel
    private let loop: EventLoop
    let server: HTTPServer
    private var parser: HTTPRequestParser
    private var slots: [Slot] = []
    private var nextSlotID = 0

    /// False once no further request will be parsed (error, `Connection: close`, draining).
    private var acceptingRequests = true
    private var closeAfterWrite = false
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

    init(fd: Int32, loop: EventLoop, server: HTTPServer) {
        self.channel = SocketChannel(fd: fd, loop: loop)
        self.loop = loop
        self.server = server
        self.parser = HTTPRequestParser(limits: server.settings.limits)
    }

    func start() {
        loop.register(self)
        channel.start(readable: { @Sendable in self.readable() }, writable: { @Sendable in self.writeOutput() },
                      closed: { @Sendable in self.socketClosed() })
    }

    // MARK: Reading

    private func readable() {
        guard !closed else { return }
        let capacity = loop.readBuffer.count
        while !closed && !channel.readSuspended {
            switch SocketChannel.read(channel.fd, into: &loop.readBuffer) {
            case .bytes(let n):
                let now = MonotonicTime.now
                lastActivity = now
                if channel.lingerSince != nil || !acceptingRequests { if n < capacity { return } else { continue } }
                if bodyProgressAt != nil { bodyProgressAt = now }
                if prefaceBytes != nil && holdPreface(count: n) { return }
                loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                processInput()
                if n < capacity { return }
            case .end:
                peerClosed = true
                if channel.lingerSince != nil { finalClose(); return }
                // A half-closed client still gets the answers to the requests it completed.
                abandonIncompleteRequest()
                acceptingRequests = false
                channel.suspendReading()
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
        while acceptingRequests && slots.count < server.settings.maxPipelinedRequests {
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
                var slot = Slot(id: nextSlotID, isHead: head.method == "HEAD", keepAlive: head.keepAlive,
                                http10: head.versionMinor == 0)
                nextSlotID += 1
                if slot.id == 0 { upgradeSettings = HTTP2Handoff.upgradeSettings(head) }
                if !head.keepAlive { stopAfterCurrent = true }
                if let early = service.check(head) {
                    answerEarly(slot, early, head: head)
                    continue
                }
                let announced = announcedBodyBytes(head)
                if announced > 0 {
                    guard server.reserveBodyBytes(announced) else {
                        answerEarly(slot, .bodyBudgetSpent, head: head)
                        continue
                    }
                    slot.reservedBytes = announced
                }
                if head.expectsContinue {
                    if slots.isEmpty { channel.output.append(contentsOf: HTTPResponseEncoder.continueLine) } else { slot.needsContinue = true }
                }
                slots.append(slot)
                if head.expectsContinue && slots.count == 1 { writeOutput() }
            case .request(let request):
                bodyProgressAt = nil
                guard let slot = slots.last else { continue }
                if drainRequested || stopAfterCurrent { acceptingRequests = false }
                if slot.answeredEarly { continue }
                if slot.id == 0, let settings = upgradeSettings, acceptingRequests && slots.count == 1 && parser.isIdle,
                   let upgraded = HTTP2Connection(fd: channel.fd, loop: loop, server: server, upgrading: request,
                                                  settings: settings, unsent: channel.unsentOutput) {
                    handOff(to: upgraded)
                    return
                }
                let id = slot.id
                service.handle(request) { response in
                    self.loop.execute { self.complete(id, response) }
                }
            }
        }
        if acceptingRequests && slots.count >= server.settings.maxPipelinedRequests { channel.suspendReading() }
        if acceptingRequests && bodyProgressAt == nil && !parser.isIdle {
            if headStartedAt == nil { headStartedAt = MonotonicTime.now }
        } else {
            headStartedAt = nil
        }
    }

    private var service: any HTTPService { server.service }

    /// Answers a request from its head alone; its body (if any) is not read, so the connection
    /// cannot be reused.
    private func answerEarly(_ slot: Slot, _ response: HTTPResponse, head: HTTPRequestHead) {
        var slot = slot
        slot.response = response
        slot.answeredEarly = true
        if announcedBodyBytes(head) > 0 {
            slot.closeAfter = true
            acceptingRequests = false
            bodyProgressAt = nil
        }
        slots.append(slot)
        flushResponses()
    }

    /// The body bytes a request will hold: its `Content-Length`, or the body limit when chunked.
    private func announcedBodyBytes(_ head: HTTPRequestHead) -> Int {
        if head.headers["transfer-encoding"] != nil { return server.settings.limits.maxBodyBytes }
        return head.headers["content-length"].flatMap { Int($0) } ?? 0
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
        guard bodyProgressAt != nil, let last = slots.last, last.response == nil else { return }
        removeSlots(slots.count - 1..<slots.count)
        bodyProgressAt = nil
    }

    /// Answers a protocol error after the responses already due, then closes.
    private func fail(status: Int, reason: String) {
        abandonIncompleteRequest()
        acceptingRequests = false
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
            let keepAlive = slot.keepAlive && !slot.closeAfter && !last
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
        } else if channel.readSuspended && !peerClosed && slots.count < server.settings.maxPipelinedRequests {
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

    /// Stops taking new requests: idle connections close now, busy ones after their answers.
    func drain() {
        guard !closed else { return }
        drainRequested = true
        if parser.isIdle && bodyProgressAt == nil {
            acceptingRequests = false
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

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
final class Connection: @unchecked Sendable, LoopConnection {
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

    let fd: Int32
    private let loop: EventLoop
    private let server: HTTPServer
    private var parser: HTTPRequestParser
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private var readSuspended = false
    private var writeSuspended = true
    private var pendingCancels = 0

    private var output: [UInt8] = []
    private var outputOffset = 0
    private var slots: [Slot] = []
    private var nextSlotID = 0

    /// False once no further request will be parsed (error, `Connection: close`, draining).
    private var acceptingRequests = true
    private var closeAfterWrite = false
    private var peerClosed = false
    private var closed = false
    private var lingerSince: ContinuousClock.Instant?
    private var drainRequested = false
    /// The request being received asked for `Connection: close`.
    private var stopAfterCurrent = false
    /// The first bytes while they match the HTTP/2 preface; nil once the connection is HTTP/1.
    private var prefaceBytes: [UInt8]? = []
    /// The decoded `HTTP2-Settings` of a first request that asks to upgrade to h2c.
    private var upgradeSettings: [UInt8]?
    /// Takes the socket over once this connection's sources are cancelled.
    private var successor: HTTP2Connection?

    private var lastActivity = ContinuousClock.now
    private var headStartedAt: ContinuousClock.Instant?
    private var bodyProgressAt: ContinuousClock.Instant?
    private var writeStalledSince: ContinuousClock.Instant?

    init(fd: Int32, loop: EventLoop, server: HTTPServer) {
        self.fd = fd
        self.loop = loop
        self.server = server
        self.parser = HTTPRequestParser(limits: server.settings.limits)
    }

    func start() {
        loop.register(self)
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: loop.queue)
        source.setEventHandler { @Sendable in self.readable() }
        source.setCancelHandler { @Sendable in self.sourceCancelled() }
        pendingCancels += 1
        readSource = source
        source.resume()
    }

    // MARK: Reading

    private func readable() {
        guard !closed else { return }
        let capacity = loop.readBuffer.count
        while !closed && !readSuspended {
            let n = loop.readBuffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, capacity) }
            if n > 0 {
                let now = ContinuousClock.now
                lastActivity = now
                if lingerSince != nil || !acceptingRequests { if n < capacity { return } else { continue } }
                if bodyProgressAt != nil { bodyProgressAt = now }
                if prefaceBytes != nil && holdPreface(count: n) { return }
                loop.readBuffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                processInput()
                if n < capacity { return }
            } else if n == 0 {
                peerClosed = true
                if lingerSince != nil { finalClose(); return }
                // A half-closed client still gets the answers to the requests it completed.
                abandonIncompleteRequest()
                acceptingRequests = false
                suspendReading()
                if slots.isEmpty && outputOffset >= output.count { finalClose() }
                return
            } else {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
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
            handOff(to: HTTP2Connection(fd: fd, loop: loop, server: server, received: held + loop.readBuffer[0..<count]))
        }
        return true
    }

    /// Stops this connection; `successor` starts on the socket once the sources are cancelled.
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
            switch event {
            case .head(let head):
                headStartedAt = nil
                bodyProgressAt = ContinuousClock.now
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
                    if slots.isEmpty { output.append(contentsOf: HTTPResponseEncoder.continueLine) } else { slot.needsContinue = true }
                }
                slots.append(slot)
                if head.expectsContinue && slots.count == 1 { writeOutput() }
            case .request(let request):
                bodyProgressAt = nil
                guard let slot = slots.last else { continue }
                if drainRequested || stopAfterCurrent { acceptingRequests = false }
                if slot.answeredEarly { continue }
                if slot.id == 0, let settings = upgradeSettings, acceptingRequests && slots.count == 1 && parser.isIdle,
                   let upgraded = HTTP2Connection(fd: fd, loop: loop, server: server, upgrading: request,
                                                  settings: settings, unsent: Array(output[outputOffset...])) {
                    handOff(to: upgraded)
                    return
                }
                let id = slot.id
                service.handle(request) { response in
                    self.loop.execute { self.complete(id, response) }
                }
            }
        }
        if acceptingRequests && slots.count >= server.settings.maxPipelinedRequests { suspendReading() }
        if acceptingRequests && bodyProgressAt == nil && !parser.isIdle {
            if headStartedAt == nil { headStartedAt = ContinuousClock.now }
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
        guard !closed, let first = slots.first else { return }
        let index = id - first.id
        guard index >= 0, index < slots.count, slots[index].response == nil else { return }
        slots[index].response = response
        flushResponses()
    }

    private func flushResponses() {
        while let slot = slots.first, let response = slot.response {
            let last = slots.count == 1 && !acceptingRequests
            let keepAlive = slot.keepAlive && !slot.closeAfter && !last
            loop.encoder.encode(response, headRequest: slot.isHead, keepAlive: keepAlive, http10: slot.http10, into: &output)
            if !keepAlive {
                closeAfterWrite = true
                removeSlots(0..<slots.count)
                break
            }
            removeSlots(0..<1)
            if slots.first?.needsContinue == true {
                slots[0].needsContinue = false
                output.append(contentsOf: HTTPResponseEncoder.continueLine)
            }
        }
        writeOutput()
    }

    private func writeOutput() {
        guard !closed else { return }
        while outputOffset < output.count {
            let n = output.withUnsafeBytes {
                send(fd, $0.baseAddress! + outputOffset, $0.count - outputOffset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                outputOffset += n
                writeStalledSince = nil
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeStalledSince == nil { writeStalledSince = .now }
                resumeWriting()
                return
            } else {
                finalClose()
                return
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 256 * 1024)
        outputOffset = 0
        writeStalledSince = nil
        suspendWriting()
        if closeAfterWrite || (!acceptingRequests && slots.isEmpty) {
            closeGracefully()
        } else if readSuspended && !peerClosed && slots.count < server.settings.maxPipelinedRequests {
            resumeReading()
            processInput()
        }
    }

    // MARK: Timeouts and shutdown

    func checkTimeouts(now: ContinuousClock.Instant) {
        guard !closed else { return }
        let settings = server.settings
        if let since = lingerSince {
            if now - since > .seconds(2) { finalClose() }
            return
        }
        if let since = writeStalledSince, now - since > settings.idleTimeout {
            finalClose()
            return
        }
        if let since = headStartedAt, now - since > settings.headerTimeout {
            fail(status: 408, reason: "request header timeout")
            return
        }
        if let since = bodyProgressAt, now - since > settings.bodyTimeout {
            fail(status: 408, reason: "request body timeout")
            return
        }
        if slots.isEmpty && parser.isIdle && outputOffset >= output.count && now - lastActivity > settings.idleTimeout {
            finalClose()
        }
    }

    /// Stops taking new requests: idle connections close now, busy ones after their answers.
    func drain() {
        guard !closed else { return }
        drainRequested = true
        if parser.isIdle && bodyProgressAt == nil {
            acceptingRequests = false
            if slots.isEmpty && outputOffset >= output.count { finalClose() }
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
        shutdown(fd, Int32(SHUT_WR))
        lingerSince = .now
        resumeReading()
    }

    private func finalClose() {
        guard !closed else { return }
        closed = true
        removeSlots(0..<slots.count)
        output = []
        if let source = readSource {
            if readSuspended { source.resume() }
            source.cancel()
        }
        if let source = writeSource {
            if writeSuspended { source.resume() }
            source.cancel()
        }
    }

    private func sourceCancelled() {
        pendingCancels -= 1
        guard pendingCancels == 0 else { return }
        readSource?.setEventHandler(handler: nil)
        readSource?.setCancelHandler(handler: nil)
        writeSource?.setEventHandler(handler: nil)
        writeSource?.setCancelHandler(handler: nil)
        readSource = nil
        writeSource = nil
        loop.unregister(self)
        if let successor {
            // The socket, and its place in the connection count, pass to HTTP/2.
            successor.start()
            return
        }
        close(fd)
        server.connectionClosed()
    }

    private func suspendReading() {
        guard !readSuspended, let source = readSource else { return }
        readSuspended = true
        source.suspend()
    }

    private func resumeReading() {
        guard readSuspended, let source = readSource else { return }
        readSuspended = false
        source.resume()
    }

    private func resumeWriting() {
        if writeSource == nil {
            let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: loop.queue)
            source.setEventHandler { @Sendable in self.writeOutput() }
            source.setCancelHandler { @Sendable in self.sourceCancelled() }
            pendingCancels += 1
            writeSource = source
            writeSuspended = true
        }
        guard writeSuspended, let source = writeSource else { return }
        writeSuspended = false
        source.resume()
    }

    private func suspendWriting() {
        guard !writeSuspended, let source = writeSource else { return }
        writeSuspended = true
        source.suspend()
    }
}

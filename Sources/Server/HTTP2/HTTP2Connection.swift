import CNghttp2
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP/2 cleartext connection, taken over from an `HTTP1Connection` that saw the preface
/// or an `Upgrade: h2c` request. An nghttp2 server session does the framing; this class feeds it
/// the socket's bytes (`mem_recv`), writes what it produces (`mem_send`), and turns each request
/// stream into an `HTTPRequest` for the service. Every mutable field, and the session, is touched
/// only on the loop's queue; handlers capture `self` strongly and are cleared when the socket closes.
///
/// Flow control: WINDOW_UPDATEs are not automatic. A stream's window is credited as its body bytes
/// are stored; the connection's window only while the bodies held (stored or with the service,
/// unanswered) fit the body budget, or nothing is with the service. So a slow service slows the
/// sender instead of growing memory.
final class HTTP2Connection: @unchecked Sendable, SocketChannelOwner {
    private(set) var channel: SocketChannel
    private let loop: EventLoop
    let server: HTTPServer
    private let session: OpaquePointer
    private var streams: [Int32: HTTP2Stream] = [:]

    /// Bytes received before the hand-off, fed to the session when the connection starts.
    private var received: [UInt8]
    /// The upgrade's request, which becomes stream 1 when the connection starts.
    private var upgradeRequest: HTTPRequest?

    /// Inside `nghttp2_session_mem_recv`: responses are submitted, and sent once it returns.
    private var receiving = false
    private var closed: Bool { channel.cancelled }
    private var drainPhase = DrainPhase.serving
    /// A connection error was reported (once per connection).
    private var failed = false
    private var consecutiveEmptyFrames = 0
    /// Empty DATA frames (without END_STREAM) in a row that a client may send.
    static let maxConsecutiveEmptyFrames = 10

    /// Request body bytes of unanswered streams, and connection-window credit withheld for them.
    private var heldBytes = 0
    private var owedCredit = 0
    private var streamsWithService = 0

    private let startedAt = MonotonicTime.now
    private var settingsReceived = false
    private var lastActivity = MonotonicTime.now

    /// A connection whose client sent the preface with prior knowledge; `received` starts with it.
    convenience init(fd: Int32, loop: EventLoop, server: HTTPServer, received: [UInt8]) {
        self.init(fd: fd, loop: loop, server: server, received: received, unsent: [])
    }

    /// A connection upgraded by `request` (complete, with `HTTP2-Settings` decoded as
    /// `settings`); `unsent` is output the HTTP/1.1 connection had not written yet. Nil when
    /// nghttp2 refuses the settings or the body is too large: the request then stays HTTP/1.1.
    convenience init?(
        fd: Int32, loop: EventLoop, server: HTTPServer, upgrading request: HTTPRequest,
        settings: [UInt8], unsent: [UInt8]
    ) {
        guard request.body.count <= HTTP2Handoff.maxUpgradeBodyBytes else { return nil }
        self.init(fd: fd, loop: loop, server: server, received: [], unsent: unsent + HTTP2Handoff.switchingProtocols)
        let status = settings.withUnsafeBufferPointer {
            nghttp2_session_upgrade2(
                session, $0.baseAddress, $0.count,
                request.head.method == "HEAD" ? 1 : 0, nil)
        }
        guard status == 0 else { return nil }
        upgradeRequest = HTTP2Handoff.upgradedRequest(request)
    }

    private init(fd: Int32, loop: EventLoop, server: HTTPServer, received: [UInt8], unsent: [UInt8]) {
        self.channel = SocketChannel(fd: fd, loop: loop, output: unsent)
        self.loop = loop
        self.server = server
        self.received = received
        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        var created: OpaquePointer?
        let status = nghttp2_session_server_new2(&created, HTTP2Callbacks.shared.pointer, nil, option)
        nghttp2_option_del(option)
        guard status == 0, let created else { fatalError("nghttp2_session_server_new2: \(String(cString: nghttp2_strerror(status)))") }
        session = created
        nghttp2_session_set_user_data(session, Unmanaged.passUnretained(self).toOpaque())
        let settings = server.settings
        let entries = [
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue),
                value: UInt32(clamping: settings.maxConcurrentStreams)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(clamping: settings.limits.maxHeaderBytes)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0),
        ]
        entries.withUnsafeBufferPointer {
            _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), $0.baseAddress, $0.count)
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    /// Takes over the socket: watches it, replays what the HTTP/1.1 side had read, and serves the
    /// upgrade's request on stream 1.
    func start() {
        loop.register(self)
        channel.start(
            readable: { @Sendable hungUp in self.readable(hungUp: hungUp) },
            writable: { @Sendable in self.flush() },
            closed: { @Sendable in self.socketClosed() })
        if server.isDraining { drain(.announce) }
        if let request = upgradeRequest {
            upgradeRequest = nil
            var stream = HTTP2Stream(now: .now)
            stream.head = request.head
            stream.requestEnded = true
            streams[1] = stream
            dispatch(1, request)
        }
        if !received.isEmpty {
            let bytes = received
            received = []
            bytes.withUnsafeBytes { receive($0) }
        }
        flush()
    }

    // MARK: Reading

    private func readable(hungUp: Bool) {
        channel.noteReadable(hungUp: hungUp)
        let capacity = loop.readBuffer.count
        while !closed && !channel.readSuspended {
            switch SocketChannel.read(channel.fd, into: &loop.readBuffer) {
            case .bytes(let n):
                lastActivity = .now
                if channel.lingerSince == nil {
                    loop.readBuffer.withUnsafeBytes { receive(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    flush()
                }
                if !channel.mayHaveMoreInput(afterReading: n, capacity: capacity) { return }
            case .end:
                finalClose()
            case .wouldBlock:
                return
            case .failed:
                finalClose()
                return
            }
        }
    }

    /// Feeds bytes to the session; a fatal error ends the connection after a GOAWAY.
    private func receive(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        receiving = true
        let status = nghttp2_session_mem_recv(session, base, bytes.count)
        receiving = false
        if status < 0 {
            failed = true
            server.protocolError(status: 400, reason: "HTTP/2: \(String(cString: nghttp2_strerror(Int32(status))))")
            nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR.rawValue)
        }
    }

    /// nghttp2 is sending a GOAWAY with an error (a malformed or forbidden frame arrived).
    func connectionError(_ description: String) {
        guard !failed else { return }
        failed = true
        server.protocolError(status: 400, reason: "HTTP/2 connection error: \(description)")
    }

    // MARK: Streams (called from the nghttp2 callbacks)

    func beginHeaders(_ id: Int32) {
        streams[id] = HTTP2Stream(now: .now)
    }

    func header(_ id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        streams[id]?.addField(name: name, value: value, limit: server.settings.limits.maxHeaderBytes)
    }

    func settingsArrived() {
        settingsReceived = true
    }

    /// The request's header block is complete: refuse it, or have the service check it before
    /// its body is taken.
    func headersComplete(_ id: Int32, endStream: Bool) {
        guard var stream = streams[id], stream.phase == .headers else { return }
        let head = stream.makeHead()
        stream.phase = .admitting
        stream.requestEnded = endStream
        stream.progressAt = .now
        streams[id] = stream
        if let error = stream.headError {
            server.protocolError(status: error.status, reason: error.reason)
            respond(id, .text(error.status, error.reason))
            return
        }
        let limit = server.settings.limits.maxBodyBytes
        if let length = head.headers["content-length"].flatMap(Int.init), length > limit {
            respond(id, .bodyTooLarge(limit: limit))
            return
        }
        server.service.check(head) { verdict in
            self.loop.execute { self.admitted(id, verdict) }
        }
    }

    /// The service's verdict on a stream's head: a refusal is answered, an admitted stream gets
    /// the window credit its body has waited for (and `100 Continue` if it asked).
    private func admitted(_ id: Int32, _ verdict: HTTPResponse?) {
        guard !closed, var stream = streams[id], stream.phase == .admitting else { return }
        if let refusal = verdict {
            respond(id, refusal)
            flush()
            return
        }
        stream.phase = .body
        let credit = stream.uncreditedBytes
        stream.uncreditedBytes = 0
        streams[id] = stream
        if credit > 0 { nghttp2_session_consume_stream(session, id, credit) }
        if stream.requestEnded {
            requestComplete(id)
        } else if stream.head?.headers["expect"].map({ $0.caseInsensitiveEquals("100-continue") }) == true {
            HTTP2ResponseHead.withFields(status: 100, headers: HTTPHeaders(), date: dateValue(), contentLength: nil) {
                _ = nghttp2_submit_headers(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, nil, $0, $1, nil)
            }
        }
        flush()
    }

    /// Body bytes of a stream: stored while it is receiving and within the limit, else dropped.
    /// Either way their flow-control credit is returned (the connection's maybe later; the
    /// stream's once the head is admitted).
    func data(_ id: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        if var stream = streams[id], stream.phase == .body || stream.phase == .admitting {
            let limit = server.settings.limits.maxBodyBytes
            if stream.body.count + bytes.count > limit {
                server.protocolError(status: 413, reason: "request body too large")
                respond(id, .bodyTooLarge(limit: limit))
            } else if !server.reserveBodyBytes(bytes.count, holding: stream.heldBytes) {
                respond(id, .bodyBudgetSpent)
            } else {
                streams[id] = nil  // keep the body uniquely referenced while it grows
                stream.body.append(contentsOf: bytes)
                stream.heldBytes += bytes.count
                stream.progressAt = .now
                if stream.phase == .admitting {
                    stream.uncreditedBytes += bytes.count
                } else {
                    nghttp2_session_consume_stream(session, id, bytes.count)
                }
                streams[id] = stream
                heldBytes += bytes.count
                creditConnection(bytes.count)
                return
            }
        }
        if nghttp2_session_find_stream(session, id) != nil { nghttp2_session_consume_stream(session, id, bytes.count) }
        creditConnection(bytes.count)
    }

    /// A DATA frame arrived. Empty ones without END_STREAM carry nothing; a flood of them costs
    /// the server work and the client nothing (CVE-2019-9518), so too many in a row end the
    /// connection with ENHANCE_YOUR_CALM, as Envoy does.
    func dataFrameReceived(length: Int, endStream: Bool) {
        guard length == 0 && !endStream else {
            consecutiveEmptyFrames = 0
            return
        }
        consecutiveEmptyFrames += 1
        if consecutiveEmptyFrames > Self.maxConsecutiveEmptyFrames {
            connectionError("\(consecutiveEmptyFrames) empty DATA frames in a row")
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        }
    }

    /// The client ended the stream: the request goes to the service unless it was answered already.
    func requestComplete(_ id: Int32) {
        streams[id]?.requestEnded = true
        guard var stream = streams[id], stream.phase == .body, let head = stream.head else { return }
        let request = HTTPRequest(head: head, body: stream.body)
        stream.body = []
        streams[id] = stream
        dispatch(id, request)
    }

    private func dispatch(_ id: Int32, _ request: HTTPRequest) {
        streams[id]?.phase = .service
        streamsWithService += 1
        server.service.handle(request) { response in
            self.loop.execute { self.complete(id, response) }
        }
    }

    /// The service's answer; dropped if the client reset the stream meanwhile.
    private func complete(_ id: Int32, _ response: HTTPResponse) {
        guard !closed, streams[id]?.phase == .service else { return }
        respond(id, response)
        flush()
    }

    /// nghttp2 has closed the stream (answered, or reset by either side).
    func streamClosed(_ id: Int32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        if stream.phase == .service { streamsWithService -= 1 }
        release(stream.heldBytes)
    }

    // MARK: Responses

    private func respond(_ id: Int32, _ response: HTTPResponse) {
        guard var stream = streams[id] else { return }
        if stream.phase == .service { streamsWithService -= 1 }
        let held = stream.heldBytes
        stream.phase = .answered
        stream.body = []
        stream.heldBytes = 0
        let bodyless = response.status == 204 || response.status == 304 || response.status < 200
        let isHead = stream.head?.method == "HEAD"
        stream.responseBody = bodyless || isHead ? [] : response.body
        stream.responseOffset = 0
        stream.progressAt = .now
        streams[id] = stream
        release(held)

        var provider = nghttp2_data_provider()
        provider.read_callback = { _, id, buffer, length, flags, _, userData in
            HTTP2Callbacks.connection(userData).readResponse(id, into: buffer!, length: length, flags: flags!)
        }
        let hasBody = !stream.responseBody.isEmpty
        let status = HTTP2ResponseHead.withFields(
            status: response.status, headers: response.headers, date: dateValue(),
            contentLength: bodyless ? nil : response.body.count
        ) { fields, count in
            hasBody
                ? nghttp2_submit_response(session, id, fields, count, &provider)
                : nghttp2_submit_response(session, id, fields, count, nil)
        }
        if status != 0 {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_INTERNAL_ERROR.rawValue)
        }
    }

    /// The response's last frame went out. If the request is still arriving (answered early, over a
    /// limit, or timed out), RST_STREAM NO_ERROR tells the client to stop sending it (RFC 9113 §8.1).
    func responseSent(_ id: Int32) {
        guard let stream = streams[id], !stream.requestEnded else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_NO_ERROR.rawValue)
    }

    /// nghttp2's data provider: copies the next part of the stream's response body.
    func readResponse(
        _ id: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
        flags: UnsafeMutablePointer<UInt32>
    ) -> Int {
        guard var stream = streams[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let count = min(length, stream.responseBody.count - stream.responseOffset)
        if count > 0 {
            stream.responseBody.withUnsafeBufferPointer {
                buffer.update(from: $0.baseAddress! + stream.responseOffset, count: count)
            }
        }
        stream.responseOffset += count
        if count > 0 { stream.progressAt = .now }
        if stream.responseOffset == stream.responseBody.count {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            stream.responseBody = []
        }
        streams[id] = stream
        return count
    }

    private func dateValue() -> ArraySlice<UInt8> {
        let line = loop.encoder.dateLine()  // "Date: …\r\n"
        return line[6..<(line.count - 2)]
    }

    // MARK: Flow control

    /// Returns connection-window credit now, or owes it while the service holds more than the budget.
    private func creditConnection(_ count: Int) {
        if heldBytes <= server.settings.limits.maxBodyBytes || streamsWithService == 0 {
            nghttp2_session_consume_connection(session, count + owedCredit)
            owedCredit = 0
        } else {
            owedCredit += count
        }
    }

    private func release(_ count: Int) {
        server.releaseBodyBytes(count)
        heldBytes -= count
        if owedCredit > 0 { creditConnection(0) }
    }

    // MARK: Writing

    /// Sends what the session has to send; closes once the session wants neither to read nor to write.
    private func flush() {
        guard !closed, !receiving, channel.lingerSince == nil else { return }
        while true {
            while !channel.isOverHighWater {
                var chunk: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &chunk)
                if n < 0 {
                    finalClose()
                    return
                }
                guard n > 0, let chunk else { break }
                channel.output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: n))
            }
            if channel.isFlushed { break }
            switch channel.writeOutput() {
            case .flushed:
                continue
            case .blocked:
                // Read no more until the peer takes what it has been sent.
                channel.suspendReading()
                return
            case .failed:
                finalClose()
                return
            }
        }
        channel.resumeReading()
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            closeGracefully()
        }
    }

    // MARK: Timeouts and shutdown

    func checkProtocolTimeouts(now: MonotonicTime, settings: HTTPServerSettings) {
        if !settingsReceived && now - startedAt > settings.headerTimeout {
            server.protocolError(status: 408, reason: "HTTP/2 preface timeout")
            finalClose()
            return
        }
        for (id, stream) in streams {
            switch stream.phase {
            case .headers where now - stream.progressAt > settings.headerTimeout:
                // A header block still open blocks the whole connection (RFC 9113 §6.10).
                server.protocolError(status: 408, reason: "request header timeout")
                nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR.rawValue)
            case .body where now - stream.progressAt > settings.bodyTimeout,
                .admitting where now - stream.progressAt > settings.bodyTimeout:
                server.protocolError(status: 408, reason: "request body timeout")
                respond(id, .text(408, "request body timeout"))
            case .answered where !stream.responseBody.isEmpty && now - stream.progressAt > settings.idleTimeout:
                // The client's flow-control window has let none of the response out for that long
                // (a window of 0 would hold the stream, and the connection, forever).
                server.protocolError(status: 408, reason: "HTTP/2 response stalled by the client's flow-control window")
                nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), id, NGHTTP2_CANCEL.rawValue)
            default:
                break
            }
        }
        if streams.isEmpty && channel.isFlushed && now - lastActivity > settings.idleTimeout {
            nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue)
        }
        flush()
    }

    private enum DrainPhase {
        case serving
        /// A GOAWAY with the largest stream id went out: the client opens no new streams, and
        /// those in flight are still served (RFC 9113 §6.8's graceful shutdown).
        case noticeSent
        /// The final GOAWAY went out: streams after its last id are refused.
        case closing
    }

    /// `announce`: the shutdown notice. `finish`: the final GOAWAY, after which the streams the
    /// client opened so far are answered and the connection closes once they are done.
    func drain(_ step: DrainStep) {
        guard !closed else { return }
        switch (step, drainPhase) {
        case (.announce, .serving):
            drainPhase = .noticeSent
            nghttp2_submit_shutdown_notice(session)
        case (.finish, .serving), (.finish, .noticeSent):
            drainPhase = .closing
            nghttp2_submit_goaway(
                session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                NGHTTP2_NO_ERROR.rawValue, nil, 0)
        case (.announce, _), (.finish, .closing):
            return
        }
        flush()
    }

    /// Half-closes and reads (discarding) briefly, so the peer gets the last frames rather than a reset.
    private func closeGracefully() {
        guard !closed, channel.lingerSince == nil else { return }
        channel.shutdownWriting()
    }

    func finalClose() {
        guard !closed else { return }
        channel.cancel()
        server.releaseBodyBytes(streams.values.reduce(0) { $0 + $1.heldBytes })
        streams.removeAll()
    }

    /// The channel was cancelled: the connection goes, and the socket is closed or handed on.
    private func socketClosed() {
        channel.closeSocket()
        loop.unregister(self)
        server.connectionClosed()
    }
}

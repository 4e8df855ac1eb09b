/// The server's in-flight body budget as a connection uses it (`HTTPServer`; a counter in tests).
protocol HTTP1BodyBudget {
    /// Takes `bytes` more for a body that already holds `held`; false (and nothing taken) if they
    /// don't fit.
    func reserveBodyBytes(_ bytes: Int, holding held: Int) -> Bool
    func releaseBodyBytes(_ bytes: Int)
}

extension HTTPServer: HTTP1BodyBudget {}

/// The state of one HTTP/1.1 connection without its socket: which part of a request is being read
/// (`phase`), whether more requests may follow (`lifecycle`), and the answers due, kept in request
/// order for pipelining (RFC 9112 §9.3.2).
///
/// Its mutating methods take what happened (bytes read, a head or a request parsed, the service's
/// verdict, an answer, the peer's FIN, a drain step, the timeout sweep with the time) and return
/// what the connection must do. It reads no clock and touches no socket, so it is tested without
/// either. A value stored in `HTTP1Connection` and used only on its loop.
struct HTTP1ConnectionState<Budget: HTTP1BodyBudget> {
    /// The request being read. `done` exactly when `lifecycle` no longer accepts requests.
    enum Phase {
        /// Nothing read yet: the first bytes may be the HTTP/2 connection preface (RFC 9113 §3.3).
        case start
        /// The bytes so far begin the preface; they are held back from the parser. The header
        /// timeout runs from the first one.
        case preface(held: [UInt8], since: MonotonicTime)
        /// Between requests: nothing of the next one is buffered.
        case idle
        /// Part of a head has arrived (the header timeout runs).
        case head(since: MonotonicTime)
        /// The head is complete and the service is deciding on it; nothing more is parsed until it
        /// has. The body timeout runs.
        case admission(Admission)
        /// The head is decided; the parser delivers the rest of the request. The body timeout runs.
        case body(Body)
        /// No further request is read.
        case done
    }

    enum Lifecycle: Equatable {
        /// Requests follow one another on the connection.
        case keepAlive
        /// The request being read (or the next one) is the last: it asked for `Connection: close`
        /// (or came on a probe-only connection), or a drain began (`draining`: every answer from
        /// now on closes the connection).
        case lastRequest(draining: Bool)
        /// Nothing more is read; the answers due are written, then the connection closes.
        case finishing(draining: Bool, peerClosed: Bool)
        /// The write side is shut down and input is read and discarded for a while, so the peer
        /// gets the last answer rather than a reset caused by unread input.
        case lingering(discarded: Int)
        case closed
    }

    /// A request whose head the service is checking.
    struct Admission {
        fileprivate var slot: Slot
        let expectsContinue: Bool
        let hasBody: Bool
        /// The decoded `HTTP2-Settings` when the first request asks to upgrade to h2c.
        let upgrade: [UInt8]?
        /// The start of the body timeout (the head's arrival).
        var since: MonotonicTime
        fileprivate var verdict: Verdict
    }

    fileprivate enum Verdict {
        /// `HTTPService.check` is on the stack: a verdict given synchronously is only recorded.
        case checking
        /// Given during `check`, applied once it returns (nil admits, a response refuses).
        case given(HTTPResponse?)
        /// `check` returned without a verdict; it is applied when it arrives.
        case awaited
    }

    /// A request whose head is decided.
    struct Body {
        let id: Int
        /// The start of the body timeout: the head's decision, then each read.
        var progressAt: MonotonicTime
        /// It was refused from its head and has no body; only its end is awaited from the parser.
        let answered: Bool
        let upgrade: [UInt8]?
    }

    /// A request whose answer is not written yet.
    fileprivate struct Slot {
        let id: Int
        var response: HTTPResponse?
        let isHead: Bool
        let keepAlive: Bool
        let http10: Bool
        /// `100 Continue` is due once the answers before it are written.
        var needsContinue = false
        var closeAfter = false
        /// Taken from the body budget; given back when the slot goes.
        var reservedBytes = 0
    }

    enum ReceiveAction: Equatable {
        /// Feed the bytes to the parser and parse.
        case parse
        /// Feed `held` (preface bytes held back), then the bytes, and parse.
        case parseAfter(held: [UInt8])
        /// They begin the HTTP/2 preface: nothing to do yet.
        case hold
        /// The HTTP/2 preface is complete: hand the socket to HTTP/2 with these bytes.
        case handOff(received: [UInt8])
        /// Lingering: they are dropped.
        case discard
        /// Lingering, and the peer keeps sending: close now.
        case close
    }

    enum PeerClosedAction: Equatable {
        /// Stop reading; the answers already due are still written.
        case finishAnswers
        case close
    }

    enum HeadAction: Equatable {
        /// Ask the service (`HTTPService.check`), then call `checkReturned(id:)`; the verdict goes to
        /// `admissionDecided`.
        case check(id: Int)
        /// Refused at once (a probe-only connection): as `AdmissionAction.answer`.
        case answer(stopReading: Bool)
    }

    enum AdmissionAction: Equatable {
        /// No verdict yet: nothing more is parsed until it arrives.
        case wait
        /// Admitted: its body is read.
        case readBody
        /// Admitted, and `100 Continue` is due now (RFC 9110 §10.1.1): send it.
        case sendContinue
        /// Refused: its answer is due, write it. `stopReading`: its unread body makes the connection
        /// unusable.
        case answer(stopReading: Bool)
    }

    enum RequestAction: Equatable {
        /// It was answered from its head.
        case none(stopReading: Bool)
        /// The first request asks for h2c and nothing follows it: upgrade, or if that is not possible
        /// call `upgradeDeclined`.
        case upgrade(settings: [UInt8])
        /// Hand it to the service; its answer goes to `responseReady(id:)`.
        case handle(id: Int, stopReading: Bool)
        /// Its answer is due (the body budget is spent): write it.
        case answer(stopReading: Bool)
    }

    enum InputAction: Equatable {
        case none
        /// Read nothing more until a verdict arrives or answers are written (bounded memory).
        case pauseReading
        /// The body in progress does not fit the budget: stop reading and write its answer.
        case answer
    }

    /// An answer to encode, moved out of its slot.
    struct OutgoingResponse {
        let response: HTTPResponse
        let isHead: Bool
        /// False: the connection closes after it, and nothing more is read (stop reading).
        let keepAlive: Bool
        let http10: Bool
        /// The next request waits for `100 Continue`: send it after this answer.
        let continueAfter: Bool
    }

    enum FlushedAction: Equatable {
        case none
        /// Reading was paused and may go on: resume it and parse.
        case resumeReading
        case close
        /// Shut the write side down and read (discarding) until the peer closes.
        case linger
    }

    enum TimerAction: Equatable {
        case none
        /// Answer the protocol error (as `fail`) and close.
        case fail(status: Int, reason: String)
        case close
    }

    enum DrainAction: Equatable {
        case none
        case stopReading
        case close
    }

    /// Input discarded while lingering before the connection is closed anyway: enough for the last
    /// answer to reach a peer that is still sending, not a way to burn CPU at line rate.
    static var lingerDiscardLimit: Int { 1 << 20 }

    private(set) var phase: Phase
    private(set) var lifecycle: Lifecycle
    private var slots: [Slot] = []
    private var nextSlotID = 0
    /// The last read; the idle timeout runs from it.
    private var lastActivity: MonotonicTime
    private let budget: Budget
    private let maxPipelinedRequests: Int
    private let headerTimeout: Duration
    private let bodyTimeout: Duration
    private let idleTimeout: Duration
    /// On a connection accepted beyond `maxConnections`: the paths it serves (one request, no HTTP/2).
    private let probePaths: Set<Substring>?

    init(settings: HTTPServerSettings, budget: Budget, probesOnly: Bool = false, now: MonotonicTime) {
        self.budget = budget
        maxPipelinedRequests = settings.maxPipelinedRequests
        headerTimeout = settings.headerTimeout
        bodyTimeout = settings.bodyTimeout
        idleTimeout = settings.idleTimeout
        probePaths = probesOnly ? settings.probePaths : nil
        phase = probesOnly ? .idle : .start
        lifecycle = .keepAlive
        lastActivity = now
    }

    var acceptsRequests: Bool {
        switch lifecycle {
        case .keepAlive, .lastRequest: true
        case .finishing, .lingering, .closed: false
        }
    }

    /// Requests parsed (or failed) whose answers are not written yet.
    var pendingAnswers: Int { slots.count }

    /// Whether the parser may deliver the next event: the connection accepts requests, no verdict
    /// is awaited, and fewer than `maxPipelinedRequests` answers are due.
    var mayParse: Bool {
        guard acceptsRequests, slots.count < maxPipelinedRequests else { return false }
        if case .admission = phase { return false }
        return true
    }

    private var isDraining: Bool {
        switch lifecycle {
        case .lastRequest(let draining), .finishing(let draining, _): draining
        case .keepAlive, .lingering, .closed: false
        }
    }

    // MARK: Reading

    /// Bytes were read.
    mutating func received(_ chunk: UnsafeRawBufferPointer, now: MonotonicTime) -> ReceiveAction {
        lastActivity = now
        if case .lingering(let discarded) = lifecycle {
            lifecycle = .lingering(discarded: discarded + chunk.count)
            return discarded + chunk.count > Self.lingerDiscardLimit ? .close : .discard
        }
        switch phase {
        case .start:
            return matchPreface(held: [], since: nil, chunk, now: now)
        case .preface(let held, let since):
            return matchPreface(held: held, since: since, chunk, now: now)
        case .admission(var admission):
            admission.since = now
            phase = .admission(admission)
        case .body(var body):
            body.progressAt = now
            phase = .body(body)
        case .idle, .head, .done:
            break
        }
        return .parse
    }

    private mutating func matchPreface(
        held: [UInt8], since: MonotonicTime?, _ chunk: UnsafeRawBufferPointer,
        now: MonotonicTime
    ) -> ReceiveAction {
        switch HTTP2Handoff.matchPreface(held: held, chunk: chunk) {
        case .mismatch:
            // HTTP/1: bytes held so far are a head in progress like any other.
            phase = since.map { Phase.head(since: $0) } ?? Phase.idle
            return held.isEmpty ? .parse : .parseAfter(held: held)
        case .partial:
            // A preface trickled byte by byte is held to the header timeout.
            phase = .preface(held: held + chunk, since: since ?? now)
            return .hold
        case .complete:
            stopAccepting()
            return .handOff(received: held + chunk)
        }
    }

    /// The peer closed its side. A half-closed client still gets the answers to the requests it
    /// completed (RFC 9112 §9.6).
    mutating func peerClosed(outputFlushed: Bool) -> PeerClosedAction {
        if case .lingering = lifecycle { return .close }
        abandonRequestInProgress()
        stopAccepting(peerClosed: true)
        return slots.isEmpty && outputFlushed ? .close : .finishAnswers
    }

    /// A request head was parsed. The service decides from the head alone (route, limits,
    /// credentials) before any body byte is read, so a refused sender cannot make the server hold
    /// its body.
    mutating func headReceived(_ head: HTTPRequestHead, now: MonotonicTime) -> HeadAction {
        let keepAlive = head.keepAlive
        let slot = Slot(id: nextSlotID, isHead: head.method == "HEAD", keepAlive: keepAlive, http10: head.versionMinor == 0)
        nextSlotID += 1
        if !keepAlive || probePaths != nil, case .keepAlive = lifecycle { lifecycle = .lastRequest(draining: false) }
        let hasBody = Self.hasBody(head)
        if let probePaths {
            guard Self.isProbe(head, probePaths) else {
                let admission = Admission(
                    slot: slot, expectsContinue: false, hasBody: hasBody, upgrade: nil, since: now,
                    verdict: .checking)
                guard case .answer(let stopReading) = apply(admission, .tooManyConnections, now: now) else {
                    preconditionFailure("a refusal is answered")
                }
                return .answer(stopReading: stopReading)
            }
        }
        let upgrade = slot.id == 0 && probePaths == nil ? HTTP2Handoff.upgradeSettings(head) : nil
        phase = .admission(
            Admission(
                slot: slot, expectsContinue: head.expectsContinue, hasBody: hasBody,
                upgrade: upgrade, since: now, verdict: .checking))
        return .check(id: slot.id)
    }

    /// `HTTPService.check` for request `id` returned; a verdict it gave meanwhile is applied now.
    mutating func checkReturned(id: Int, now: MonotonicTime) -> AdmissionAction {
        guard case .admission(var admission) = phase, admission.slot.id == id else { return .wait }
        switch admission.verdict {
        case .given(let verdict):
            return apply(admission, verdict, now: now)
        case .checking:
            admission.verdict = .awaited
            phase = .admission(admission)
            return .wait
        case .awaited:
            return .wait
        }
    }

    /// The service's verdict on request `id`: nil admits, a response refuses. Nil when there is
    /// nothing to do (stale, or given during `check`: `checkReturned` applies it).
    mutating func admissionDecided(id: Int, verdict: HTTPResponse?, now: MonotonicTime) -> AdmissionAction? {
        guard case .admission(var admission) = phase, admission.slot.id == id else { return nil }
        switch admission.verdict {
        case .checking:
            admission.verdict = .given(verdict)
            phase = .admission(admission)
            return nil
        case .awaited:
            return apply(admission, verdict, now: now)
        case .given:
            return nil
        }
    }

    /// A refusal is answered at once (its body is never read); an admitted request waits for its body.
    private mutating func apply(_ admission: Admission, _ verdict: HTTPResponse?, now: MonotonicTime) -> AdmissionAction {
        var slot = admission.slot
        if let refusal = verdict {
            slot.response = refusal
            if admission.hasBody {
                // The unread body makes the connection unusable.
                slot.closeAfter = true
                stopAccepting()
            } else {
                phase = .body(Body(id: slot.id, progressAt: admission.since, answered: true, upgrade: nil))
            }
            slots.append(slot)
            return .answer(stopReading: admission.hasBody)
        }
        phase = .body(
            Body(
                id: slot.id, progressAt: admission.hasBody ? now : admission.since, answered: false,
                upgrade: admission.upgrade))
        var action = AdmissionAction.readBody
        if admission.expectsContinue {
            if slots.isEmpty { action = .sendContinue } else { slot.needsContinue = true }
        }
        slots.append(slot)
        return action
    }

    /// A request is complete (head and body).
    mutating func requestReceived(bodyBytes: Int, parserIdle: Bool) -> RequestAction {
        guard case .body(let body) = phase else { return .none(stopReading: false) }
        phase = .idle
        // Only an answer from its head can be written already; it said whether the connection stays.
        if slots.isEmpty { return .none(stopReading: false) }
        var stopReading = false
        if case .lastRequest = lifecycle {
            stopAccepting()
            stopReading = true
        }
        if body.answered { return .none(stopReading: stopReading) }
        // An upgrade needs the request to be the only one: nothing answered before, nothing after.
        if body.id == 0, let settings = body.upgrade, acceptsRequests && slots.count == 1 && parserIdle {
            return .upgrade(settings: settings)
        }
        return dispatch(bodyBytes: bodyBytes, stopReading: stopReading)
    }

    /// The h2c upgrade that `requestReceived` offered could not be made: the request is served
    /// over HTTP/1.1.
    mutating func upgradeDeclined(bodyBytes: Int) -> RequestAction {
        dispatch(bodyBytes: bodyBytes, stopReading: false)
    }

    private mutating func dispatch(bodyBytes: Int, stopReading: Bool) -> RequestAction {
        guard let last = slots.indices.last else { return .none(stopReading: stopReading) }
        guard reserveBody(upTo: bodyBytes) else {
            slots[last].response = .bodyBudgetSpent
            return .answer(stopReading: stopReading)
        }
        return .handle(id: slots[last].id, stopReading: stopReading)
    }

    /// The parser has delivered what it can from the input so far.
    mutating func inputProcessed(
        bodyBytesReceived: Int, parserIdle: Bool, overHighWater: Bool,
        now: MonotonicTime
    ) -> InputAction {
        guard acceptsRequests else { return .none }
        if case .body(let body) = phase, !body.answered, !reserveBody(upTo: bodyBytesReceived) {
            refuseBodyInProgress()
            return .answer
        }
        var pause = slots.count >= maxPipelinedRequests || overHighWater
        switch phase {
        case .admission:
            pause = true
        case .idle:
            if !parserIdle { phase = .head(since: now) }
        case .head:
            if parserIdle { phase = .idle }
        case .start, .preface, .body, .done:
            break
        }
        return pause ? .pauseReading : .none
    }

    /// A protocol error (malformed input, a timeout): its answer is queued after those already due,
    /// and nothing more is read.
    mutating func fail(status: Int, reason: String) {
        abandonRequestInProgress()
        stopAccepting()
        var slot = Slot(id: nextSlotID, isHead: false, keepAlive: false, http10: false)
        nextSlotID += 1
        slot.response = .text(status, reason)
        slot.closeAfter = true
        slots.append(slot)
    }

    // MARK: Body budget

    /// Takes from the in-flight body budget what the request in progress holds beyond its
    /// reservation: body bytes as they arrive, never the length a sender merely announces.
    private mutating func reserveBody(upTo bytes: Int) -> Bool {
        guard let last = slots.indices.last else { return true }
        let more = bytes - slots[last].reservedBytes
        guard more > 0 else { return true }
        guard budget.reserveBodyBytes(more, holding: slots[last].reservedBytes) else { return false }
        slots[last].reservedBytes += more
        return true
    }

    /// Answers the request whose body is arriving without reading the rest; the connection closes.
    private mutating func refuseBodyInProgress() {
        guard var slot = slots.popLast() else { return }
        budget.releaseBodyBytes(slot.reservedBytes)
        slot.reservedBytes = 0
        slot.response = .bodyBudgetSpent
        slot.closeAfter = true
        stopAccepting()
        slots.append(slot)
    }

    // MARK: Answers

    /// The service answered request `id`; true if answers may now be written.
    mutating func responseReady(id: Int, _ response: HTTPResponse) -> Bool {
        guard let first = slots.first else { return false }
        let index = id - first.id
        guard index >= 0, index < slots.count, slots[index].response == nil else { return false }
        slots[index].response = response
        return true
    }

    /// The next answer to write, in request order; nil when the first due is not ready.
    mutating func nextResponse() -> OutgoingResponse? {
        guard !slots.isEmpty, let response = slots[0].response.take() else { return nil }
        let slot = slots[0]
        let last = slots.count == 1 && !acceptsRequests
        let keepAlive = slot.keepAlive && !slot.closeAfter && !last && !isDraining
        guard keepAlive else {
            // The connection closes after this answer: the requests after it are dropped, and none
            // is read any more (RFC 9112 §9.6).
            removeSlots(0..<slots.count)
            stopAccepting()
            return OutgoingResponse(
                response: response, isHead: slot.isHead, keepAlive: false, http10: slot.http10,
                continueAfter: false)
        }
        removeSlots(0..<1)
        var continueAfter = false
        if slots.first?.needsContinue == true {
            slots[0].needsContinue = false
            continueAfter = true
        }
        return OutgoingResponse(
            response: response, isHead: slot.isHead, keepAlive: true, http10: slot.http10,
            continueAfter: continueAfter)
    }

    /// All output is sent.
    mutating func outputFlushed(parserIdle: Bool, readSuspended: Bool) -> FlushedAction {
        switch lifecycle {
        case .finishing(_, let peerClosed) where slots.isEmpty:
            // Nothing unread to reset the connection with: close at once.
            if peerClosed || parserIdle { return .close }
            lifecycle = .lingering(discarded: 0)
            return .linger
        case .keepAlive, .lastRequest:
            if case .admission = phase { return .none }
            return readSuspended && slots.count < maxPipelinedRequests ? .resumeReading : .none
        case .finishing, .lingering, .closed:
            return .none
        }
    }

    // MARK: Timeouts and shutdown

    /// The timeout sweep: a head or body too slow is answered 408, an idle connection is closed.
    func timerFired(now: MonotonicTime, parserIdle: Bool, outputFlushed: Bool) -> TimerAction {
        switch phase {
        case .preface(_, let since), .head(let since):
            if now - since > headerTimeout { return .fail(status: 408, reason: "request header timeout") }
        case .admission(let admission):
            if now - admission.since > bodyTimeout { return .fail(status: 408, reason: "request body timeout") }
        case .body(let body):
            if now - body.progressAt > bodyTimeout { return .fail(status: 408, reason: "request body timeout") }
        case .start, .idle, .done:
            break
        }
        if slots.isEmpty && parserIdle && outputFlushed && now - lastActivity > idleTimeout { return .close }
        return .none
    }

    /// `announce`: every answer from now on carries `Connection: close`, so keep-alive senders
    /// reconnect (to another instance, once the load balancer has taken this one out) instead of
    /// meeting a closed socket later. `finish`: stops taking new requests; an idle connection closes
    /// now, a busy one after its answers.
    mutating func drain(_ step: DrainStep, parserIdle: Bool, outputFlushed: Bool) -> DrainAction {
        switch lifecycle {
        case .keepAlive, .lastRequest:
            lifecycle = .lastRequest(draining: true)
        case .finishing(_, let peerClosed):
            lifecycle = .finishing(draining: true, peerClosed: peerClosed)
        case .lingering, .closed:
            return .none
        }
        guard step == .finish, parserIdle else { return .none }
        switch phase {
        case .admission, .body: return .none
        case .start, .preface, .idle, .head, .done: break
        }
        stopAccepting()
        return slots.isEmpty && outputFlushed ? .close : .stopReading
    }

    /// The connection is closed: the answers due are dropped and their body reservations given back.
    mutating func close() {
        phase = .done
        lifecycle = .closed
        removeSlots(0..<slots.count)
    }

    // MARK: Helpers

    /// No further request is read.
    private mutating func stopAccepting(peerClosed: Bool = false) {
        switch lifecycle {
        case .keepAlive:
            lifecycle = .finishing(draining: false, peerClosed: peerClosed)
        case .lastRequest(let draining):
            lifecycle = .finishing(draining: draining, peerClosed: peerClosed)
        case .finishing(let draining, let closed):
            lifecycle = .finishing(draining: draining, peerClosed: closed || peerClosed)
        case .lingering, .closed:
            break
        }
        phase = .done
    }

    /// Forgets a request whose head or body will never complete (error, timeout, peer gone), so
    /// the answers before it can still be written and the connection can close.
    private mutating func abandonRequestInProgress() {
        guard case .body(let body) = phase, !body.answered, let last = slots.last, last.response == nil else { return }
        removeSlots(slots.count - 1..<slots.count)
    }

    /// Removes slots and gives their body reservations back.
    private mutating func removeSlots(_ range: Range<Int>) {
        var released = 0
        for slot in slots[range] { released += slot.reservedBytes }
        slots.removeSubrange(range)
        budget.releaseBodyBytes(released)
    }

    private static func isProbe(_ head: HTTPRequestHead, _ paths: Set<Substring>) -> Bool {
        (head.method == "GET" || head.method == "HEAD") && paths.contains(head.path)
    }

    /// Whether a body follows the head (chunked, or a non-zero `Content-Length`).
    private static func hasBody(_ head: HTTPRequestHead) -> Bool {
        if head.headers["transfer-encoding"] != nil { return true }
        return head.headers["content-length"].flatMap { Int($0) }.map { $0 > 0 } ?? false
    }
}

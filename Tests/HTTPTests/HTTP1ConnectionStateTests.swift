import Testing

@testable import PersistorHTTP

// MARK: - Helpers

/// The in-flight body budget as a counter, deciding as `HTTPServer.reserveBodyBytes` does: a body
/// alone in flight always fits.
private final class CountingBudget: HTTP1BodyBudget {
    let limit: Int
    private(set) var held = 0

    init(limit: Int = 1 << 20) {
        self.limit = limit
    }

    func reserveBodyBytes(_ bytes: Int, holding alreadyHeld: Int) -> Bool {
        let total = held + bytes
        if total > limit && total != alreadyHeld + bytes { return false }
        held = total
        return true
    }

    func releaseBodyBytes(_ bytes: Int) {
        held -= bytes
    }
}

private typealias State = HTTP1ConnectionState<CountingBudget>

private let settings = HTTPServerSettings(
    headerTimeout: .seconds(10), bodyTimeout: .seconds(30), idleTimeout: .seconds(60),
    probePaths: ["/healthz"], maxPipelinedRequests: 3, loops: 1)

private func makeState(_ budget: CountingBudget = CountingBudget(), probesOnly: Bool = false) -> State {
    State(settings: settings, budget: budget, probesOnly: probesOnly, now: at(0))
}

/// The monotonic clock `seconds` after an arbitrary origin.
private func at(_ seconds: Double) -> MonotonicTime {
    MonotonicTime(nanoseconds: Int64(seconds * 1_000_000_000))
}

private func head(
    _ method: String = "GET", _ target: String = "/", version: Int = 1,
    _ fields: [(name: String, value: String)] = []
) -> HTTPRequestHead {
    HTTPRequestHead(
        method: method, target: target, versionMinor: version,
        headers: HTTPHeaders([(name: "Host", value: "example")] + fields))
}

private func post(length: Int, _ fields: [(name: String, value: String)] = []) -> HTTPRequestHead {
    head("POST", "/", [(name: "Content-Length", value: "\(length)")] + fields)
}

extension HTTP1ConnectionState {
    mutating func receive(_ text: String, at now: MonotonicTime) -> ReceiveAction {
        Array(text.utf8).withUnsafeBytes { received($0, now: now) }
    }

    /// A head is parsed and the service decides during `check`, as `Router` does for its own checks.
    mutating func decideAtOnce(_ head: HTTPRequestHead, verdict: HTTPResponse? = nil, at now: MonotonicTime) -> AdmissionAction? {
        guard case .check(let id) = headReceived(head, now: now) else { return nil }
        #expect(admissionDecided(id: id, verdict: verdict, now: now) == nil, "a verdict given during check waits for it")
        return checkReturned(id: id, now: now)
    }

    /// A request that is admitted at once and complete is handed to the service.
    mutating func serve(_ head: HTTPRequestHead, at now: MonotonicTime) -> RequestAction? {
        guard decideAtOnce(head, at: now) == .readBody else { return nil }
        return requestReceived(bodyBytes: 0, parserIdle: true)
    }

    mutating func inputProcessed(parserIdle: Bool = true, bodyBytes: Int = 0, at now: MonotonicTime) -> InputAction {
        inputProcessed(bodyBytesReceived: bodyBytes, parserIdle: parserIdle, overHighWater: false, now: now)
    }

    /// The next answer to write, which must be ready.
    mutating func answer(sourceLocation: SourceLocation = #_sourceLocation) throws -> OutgoingResponse {
        let next = nextResponse()
        return try #require(next, "an answer is ready", sourceLocation: sourceLocation)
    }

    var phaseName: String {
        switch phase {
        case .start: "start"
        case .preface: "preface"
        case .idle: "idle"
        case .head: "head"
        case .admission: "admission"
        case .body: "body"
        case .done: "done"
        }
    }
}

// MARK: - Tests

@Suite struct HTTP1ConnectionStateTests {
    @Test("a keep-alive connection serves one request after another, each answered keep-alive")
    func keepAliveCycle() throws {
        var state = makeState()
        #expect(state.phaseName == "start")
        for id in 0..<3 {
            #expect(state.receive("GET / HTTP/1.1\r\nHost: example\r\n\r\n", at: at(Double(id))) == .parse)
            #expect(state.decideAtOnce(head(), at: at(Double(id))) == .readBody)
            #expect(state.phaseName == "body")
            #expect(state.requestReceived(bodyBytes: 0, parserIdle: true) == .handle(id: id, stopReading: false))
            #expect(state.inputProcessed(at: at(Double(id))) == .none)
            #expect(state.phaseName == "idle")
            #expect(state.nextResponse() == nil, "nothing to write before the service answers")
            #expect(state.responseReady(id: id, .text(200, "ok")) == true)
            let answer = try state.answer()
            #expect(answer.response.status == 200 && answer.keepAlive && !answer.continueAfter)
            #expect(state.nextResponse() == nil)
            #expect(state.outputFlushed(parserIdle: true, readSuspended: false) == .none)
            #expect(state.lifecycle == .keepAlive)
        }
        #expect(state.responseReady(id: 2, .text(200, "again")) == false, "an answer is taken once")
    }

    @Test("pipelined requests stop being parsed at maxPipelinedRequests and are answered in request order")
    func pipeliningStopsAtTheLimit() throws {
        var state = makeState()
        for id in 0..<3 {
            #expect(state.mayParse)
            #expect(state.serve(head(), at: at(1)) == .handle(id: id, stopReading: false))
        }
        #expect(!state.mayParse, "three answers due, the limit")
        #expect(state.inputProcessed(parserIdle: false, at: at(1)) == .pauseReading)
        #expect(state.phaseName == "head", "the next head is buffered, its timer runs")
        #expect(state.responseReady(id: 2, .text(200, "third")) == true)
        #expect(state.nextResponse() == nil, "the third waits for the first two")
        #expect(state.responseReady(id: 0, .text(200, "first")) == true)
        let first = try state.answer()
        #expect(first.response.body == Array("first\n".utf8))
        #expect(state.nextResponse() == nil)
        #expect(state.outputFlushed(parserIdle: false, readSuspended: true) == .resumeReading)
        #expect(state.mayParse)
        #expect(state.responseReady(id: 1, .text(200, "second")) == true)
        let second = try state.answer()
        #expect(second.response.body == Array("second\n".utf8))
        let third = try state.answer()
        #expect(third.response.body == Array("third\n".utf8))
        #expect(state.pendingAnswers == 0)
    }

    @Test("Connection: close makes the request the last: its answer closes, and unread input is lingered over")
    func connectionClose() throws {
        var state = makeState()
        #expect(state.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(state.decideAtOnce(head("GET", "/", [(name: "Connection", value: "close")]), at: at(1)) == .readBody)
        #expect(state.lifecycle == .lastRequest(draining: false))
        #expect(state.requestReceived(bodyBytes: 0, parserIdle: false) == .handle(id: 1, stopReading: true))
        #expect(!state.acceptsRequests && !state.mayParse && state.phaseName == "done")
        #expect(state.responseReady(id: 1, .text(200, "second")) == true)
        #expect(state.nextResponse() == nil)
        #expect(state.responseReady(id: 0, .text(200, "first")) == true)
        let beforeLast = try state.answer()
        #expect(beforeLast.keepAlive, "the answer before the last keeps the connection")
        let last = try state.answer()
        #expect(!last.keepAlive)
        // The peer sent more than it should have: the server lingers instead of closing on unread input.
        #expect(state.outputFlushed(parserIdle: false, readSuspended: true) == .linger)
        #expect(state.lifecycle == .lingering(discarded: 0))
        #expect(state.receive(String(repeating: "x", count: 1000), at: at(2)) == .discard)
        let big = String(repeating: "x", count: State.lingerDiscardLimit)
        #expect(state.receive(big, at: at(2)) == .close, "a peer that keeps sending is closed")
    }

    @Test("Connection: close with nothing buffered behind it closes at once; HTTP/1.0 without keep-alive too")
    func connectionCloseWithNothingUnread() throws {
        for request in [head("GET", "/", [(name: "Connection", value: "close")]), head("GET", "/", version: 0)] {
            var state = makeState()
            #expect(state.serve(request, at: at(1)) == .handle(id: 0, stopReading: true))
            #expect(state.responseReady(id: 0, .text(200, "ok")) == true)
            let answer = try state.answer()
            #expect(!answer.keepAlive && answer.http10 == (request.versionMinor == 0))
            #expect(state.outputFlushed(parserIdle: true, readSuspended: true) == .close)
        }
    }

    @Test("an answer that closes the connection stops parsing: what was pipelined behind it is not served")
    func closingAnswerStopsParsing() throws {
        var refused = makeState()
        #expect(
            refused.decideAtOnce(
                head("GET", "/nope", [(name: "Connection", value: "close")]), verdict: .text(404, "no route"),
                at: at(1)) == .answer(stopReading: false))
        let notFound = try refused.answer()
        #expect(!notFound.keepAlive)
        #expect(!refused.mayParse && refused.phaseName == "done", "a request sent after Connection: close is not read")
        #expect(refused.outputFlushed(parserIdle: false, readSuspended: true) == .linger)

        var draining = makeState()
        #expect(draining.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(draining.drain(.announce, parserIdle: true, outputFlushed: true) == .none)
        guard case .check(let id) = draining.headReceived(head(), now: at(2)) else {
            Issue.record("the head is checked")
            return
        }
        #expect(draining.checkReturned(id: id, now: at(2)) == .wait)
        #expect(draining.responseReady(id: 0, .text(200, "ok")) == true)
        let drained = try draining.answer()
        #expect(!drained.keepAlive, "the first answer in the drain closes")
        #expect(draining.admissionDecided(id: id, verdict: nil, now: at(3)) == nil, "the request behind it is given up")
        #expect(draining.pendingAnswers == 0)
    }

    @Test("a peer that half-closes still gets the answers it is owed, then the connection closes")
    func peerHalfCloseWithPendingAnswer() throws {
        var state = makeState()
        #expect(state.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(state.peerClosed(outputFlushed: true) == .finishAnswers)
        #expect(state.lifecycle == .finishing(draining: false, peerClosed: true))
        #expect(state.responseReady(id: 0, .text(200, "ok")) == true)
        let owed = try state.answer()
        #expect(owed.keepAlive == false, "the last answer says close")
        #expect(state.outputFlushed(parserIdle: false, readSuspended: true) == .close, "no lingering for a peer that is gone")
    }

    @Test("a peer that closes mid-body gives the request up and its body bytes back; with nothing owed it closes at once")
    func peerCloseMidBody() {
        let budget = CountingBudget()
        var state = makeState(budget)
        #expect(state.decideAtOnce(post(length: 1000), at: at(1)) == .readBody)
        #expect(state.inputProcessed(parserIdle: false, bodyBytes: 400, at: at(1)) == .none)
        #expect(budget.held == 400, "bytes received are reserved, not the announced length")
        #expect(state.peerClosed(outputFlushed: true) == .close)
        #expect(budget.held == 0 && state.pendingAnswers == 0)
    }

    @Test("a drain closes an idle connection at once, and lets a request in progress finish with Connection: close")
    func drainIdleVersusMidRequest() throws {
        var idle = makeState()
        #expect(idle.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(idle.responseReady(id: 0, .text(200, "ok")) == true)
        let idleAnswer = try idle.answer()
        #expect(idleAnswer.keepAlive)
        #expect(idle.drain(.finish, parserIdle: true, outputFlushed: true) == .close)

        var busy = makeState()
        #expect(busy.decideAtOnce(post(length: 10), at: at(1)) == .readBody)
        #expect(busy.drain(.finish, parserIdle: false, outputFlushed: true) == .none, "its body is still arriving")
        #expect(busy.acceptsRequests)
        #expect(busy.requestReceived(bodyBytes: 10, parserIdle: true) == .handle(id: 0, stopReading: true))
        #expect(busy.responseReady(id: 0, .text(204, "")) == true)
        let finished = try busy.answer()
        #expect(finished.keepAlive == false)
        #expect(busy.outputFlushed(parserIdle: true, readSuspended: true) == .close)

        var waiting = makeState()
        #expect(waiting.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(waiting.drain(.finish, parserIdle: true, outputFlushed: true) == .stopReading, "an answer is still owed")
        #expect(waiting.responseReady(id: 0, .text(200, "ok")) == true)
        let owedAnswer = try waiting.answer()
        #expect(owedAnswer.keepAlive == false)
    }

    @Test("the drain's announcement keeps an idle connection open; its next answer carries Connection: close")
    func drainAnnouncement() throws {
        var state = makeState()
        #expect(state.drain(.announce, parserIdle: true, outputFlushed: true) == .none)
        #expect(state.lifecycle == .lastRequest(draining: true))
        #expect(state.serve(head(), at: at(1)) == .handle(id: 0, stopReading: true))
        #expect(state.responseReady(id: 0, .text(200, "ok")) == true)
        let drained = try state.answer()
        #expect(drained.keepAlive == false)
    }

    @Test("a refusal from the head is answered before any body byte: no budget, no 100 Continue, the connection closes")
    func admissionRefusedBeforeBody() throws {
        let budget = CountingBudget()
        var state = makeState(budget)
        guard
            case .check(let id) = state.headReceived(
                post(length: 1_000_000, [(name: "Expect", value: "100-continue")]),
                now: at(1))
        else {
            Issue.record("the head is checked")
            return
        }
        #expect(state.checkReturned(id: id, now: at(1)) == .wait, "authentication waits for signing keys")
        #expect(!state.mayParse)
        #expect(state.inputProcessed(parserIdle: false, at: at(1)) == .pauseReading)
        #expect(state.admissionDecided(id: id + 1, verdict: nil, now: at(2)) == nil, "a verdict for another request")
        #expect(state.admissionDecided(id: id, verdict: .text(401, "no"), now: at(2)) == .answer(stopReading: true))
        #expect(state.admissionDecided(id: id, verdict: nil, now: at(2)) == nil, "a verdict is taken once")
        #expect(!state.acceptsRequests)
        let answer = try state.answer()
        #expect(answer.response.status == 401 && !answer.keepAlive && !answer.continueAfter)
        #expect(budget.held == 0)
    }

    @Test("a refused request without a body keeps the connection, and the next request is parsed")
    func bodylessRefusalKeepsTheConnection() throws {
        var state = makeState()
        #expect(state.decideAtOnce(head("GET", "/nope"), verdict: .text(404, "no route"), at: at(1)) == .answer(stopReading: false))
        let notFound = try state.answer()
        #expect(notFound.keepAlive)
        #expect(state.requestReceived(bodyBytes: 0, parserIdle: true) == .none(stopReading: false))
        #expect(state.serve(head(), at: at(2)) == .handle(id: 1, stopReading: false))
    }

    @Test("Expect: 100-continue gets 100 Continue on admission, or after the answers before it")
    func continueAfterAdmission() throws {
        let expecting = post(length: 5, [(name: "Expect", value: "100-continue")])
        var alone = makeState()
        #expect(alone.decideAtOnce(expecting, at: at(1)) == .sendContinue)

        var behind = makeState()
        #expect(behind.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(behind.decideAtOnce(expecting, at: at(1)) == .readBody)
        #expect(behind.responseReady(id: 0, .text(200, "ok")) == true)
        let earlier = try behind.answer()
        #expect(earlier.continueAfter)
    }

    @Test("the header timeout runs from a head's first byte and ends with 408")
    func headerTimeout() throws {
        var state = makeState()
        #expect(state.receive("GET / HT", at: at(1)) == .parse)
        #expect(state.inputProcessed(parserIdle: false, at: at(1)) == .none)
        #expect(state.phaseName == "head")
        #expect(state.receive("TP/1.1\r\n", at: at(5)) == .parse)
        #expect(state.inputProcessed(parserIdle: false, at: at(5)) == .none)
        #expect(state.timerFired(now: at(11), parserIdle: false, outputFlushed: true) == .none, "10 s exactly")
        #expect(
            state.timerFired(now: at(11.01), parserIdle: false, outputFlushed: true)
                == .fail(status: 408, reason: "request header timeout"))
        state.fail(status: 408, reason: "request header timeout")
        let answer = try state.answer()
        #expect(answer.response.status == 408 && !answer.keepAlive)
        #expect(state.timerFired(now: at(100), parserIdle: false, outputFlushed: false) == .none, "nothing times out twice")
    }

    @Test("the body timeout runs from the last body bytes, and bounds the wait for a verdict")
    func bodyTimeout() {
        var state = makeState()
        #expect(state.decideAtOnce(post(length: 100), at: at(1)) == .readBody)
        #expect(state.receive("0123456789", at: at(20)) == .parse)
        #expect(state.timerFired(now: at(50), parserIdle: false, outputFlushed: true) == .none)
        #expect(
            state.timerFired(now: at(50.01), parserIdle: false, outputFlushed: true)
                == .fail(status: 408, reason: "request body timeout"))

        var waiting = makeState()
        guard case .check(let id) = waiting.headReceived(post(length: 100), now: at(1)) else {
            Issue.record("the head is checked")
            return
        }
        #expect(waiting.checkReturned(id: id, now: at(1)) == .wait)
        #expect(
            waiting.timerFired(now: at(31.01), parserIdle: false, outputFlushed: true)
                == .fail(status: 408, reason: "request body timeout"))
        waiting.fail(status: 408, reason: "request body timeout")
        #expect(waiting.admissionDecided(id: id, verdict: nil, now: at(32)) == nil, "a late verdict is ignored")
    }

    @Test("the idle timeout runs from the last read, only while nothing is owed or being read")
    func idleTimeout() {
        var state = makeState()
        #expect(state.receive("GET / HTTP/1.1\r\nHost: example\r\n\r\n", at: at(5)) == .parse)
        #expect(state.serve(head(), at: at(5)) == .handle(id: 0, stopReading: false))
        #expect(state.timerFired(now: at(70), parserIdle: true, outputFlushed: true) == .none, "an answer is owed")
        #expect(state.responseReady(id: 0, .text(200, "ok")) == true)
        _ = state.nextResponse()
        #expect(state.timerFired(now: at(70), parserIdle: true, outputFlushed: false) == .none, "the answer is not sent")
        #expect(state.timerFired(now: at(65), parserIdle: true, outputFlushed: true) == .none, "60 s exactly")
        #expect(state.timerFired(now: at(65.01), parserIdle: true, outputFlushed: true) == .close)
    }

    @Test("an HTTP/2 preface is held back from the parser and hands the socket over once complete")
    func prefaceHandOff() {
        var state = makeState()
        #expect(state.receive("PRI * HTTP/2.0\r\n", at: at(1)) == .hold)
        #expect(state.phaseName == "preface")
        #expect(state.receive("\r\nSM\r\n\r\n", at: at(2)) == .handOff(received: Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)))
        #expect(!state.acceptsRequests && state.phaseName == "done")
    }

    @Test("bytes that stop matching the preface go to the parser, and the header timeout keeps its start")
    func prefaceMismatch() {
        var state = makeState()
        #expect(state.receive("P", at: at(1)) == .hold)
        #expect(
            state.timerFired(now: at(11.01), parserIdle: true, outputFlushed: true)
                == .fail(status: 408, reason: "request header timeout"), "a trickled preface is a head in progress")
        #expect(state.receive("OST / HTTP/1.1\r\n", at: at(3)) == .parseAfter(held: Array("P".utf8)))
        #expect(state.inputProcessed(parserIdle: false, at: at(3)) == .none)
        #expect(
            state.timerFired(now: at(11.01), parserIdle: false, outputFlushed: true)
                == .fail(status: 408, reason: "request header timeout"))

        var probe = makeState(probesOnly: true)
        #expect(probe.receive("PRI * HTTP/2.0\r\n", at: at(1)) == .parse, "no HTTP/2 on a probe-only connection")
    }

    @Test("an Upgrade: h2c first request is offered for the upgrade, and served over HTTP/1.1 when declined")
    func h2cUpgradeOffer() {
        let upgrade = head(
            "GET", "/",
            [
                (name: "Connection", value: "Upgrade, HTTP2-Settings"), (name: "Upgrade", value: "h2c"),
                (name: "HTTP2-Settings", value: "AAMAAABkAAQAAP__"),
            ])
        var state = makeState()
        #expect(state.decideAtOnce(upgrade, at: at(1)) == .readBody)
        #expect(
            state.requestReceived(bodyBytes: 0, parserIdle: true)
                == .upgrade(settings: [0, 3, 0, 0, 0, 0x64, 0, 4, 0, 0, 0xff, 0xff]))
        #expect(state.upgradeDeclined(bodyBytes: 0) == .handle(id: 0, stopReading: false))

        var followed = makeState()
        #expect(followed.decideAtOnce(upgrade, at: at(1)) == .readBody)
        #expect(
            followed.requestReceived(bodyBytes: 0, parserIdle: false) == .handle(id: 0, stopReading: false),
            "a request pipelined behind it would be lost")

        var second = makeState()
        #expect(second.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(second.serve(upgrade, at: at(1)) == .handle(id: 1, stopReading: false), "only the first request upgrades")
    }

    @Test("a body that does not fit the in-flight budget as it arrives is refused with 503 and closes")
    func bodyBudget() throws {
        let budget = CountingBudget(limit: 1000)
        var holder = makeState(budget)
        #expect(holder.decideAtOnce(post(length: 5000), at: at(1)) == .readBody)
        #expect(holder.inputProcessed(parserIdle: false, bodyBytes: 1200, at: at(1)) == .none, "a body alone always fits")

        var second = makeState(budget)
        #expect(second.decideAtOnce(post(length: 300), at: at(1)) == .readBody)
        #expect(second.inputProcessed(parserIdle: false, bodyBytes: 100, at: at(1)) == .answer)
        let refusal = try second.answer()
        #expect(refusal.response.status == 503 && refusal.response.headers["Retry-After"] == "1" && !refusal.keepAlive)

        var complete = makeState(budget)
        #expect(complete.decideAtOnce(post(length: 300), at: at(1)) == .readBody)
        #expect(
            complete.requestReceived(bodyBytes: 300, parserIdle: true) == .answer(stopReading: false),
            "a body read whole is refused keep-alive")
        let wholeBodyRefused = try complete.answer()
        #expect(wholeBodyRefused.keepAlive)

        #expect(budget.held == 1200)
        holder.close()
        #expect(budget.held == 0)
    }

    @Test("a probe-only connection serves a probe path and refuses anything else from its head")
    func probeOnlyConnection() throws {
        var probe = makeState(probesOnly: true)
        #expect(probe.serve(head("GET", "/healthz"), at: at(1)) == .handle(id: 0, stopReading: true))

        var delivery = makeState(probesOnly: true)
        #expect(delivery.headReceived(post(length: 10), now: at(1)) == .answer(stopReading: true))
        let refusal = try delivery.answer()
        #expect(refusal.response.status == 503 && !refusal.keepAlive)
    }

    @Test("a protocol error is answered after the answers already due, and nothing more is parsed")
    func protocolErrorAfterPendingAnswers() throws {
        let budget = CountingBudget()
        var state = makeState(budget)
        #expect(state.serve(head(), at: at(1)) == .handle(id: 0, stopReading: false))
        #expect(state.decideAtOnce(post(length: 100, [(name: "Transfer-Encoding", value: "chunked")]), at: at(1)) == .readBody)
        #expect(state.inputProcessed(parserIdle: false, bodyBytes: 50, at: at(1)) == .none)
        state.fail(status: 400, reason: "invalid chunk size")
        #expect(!state.mayParse && budget.held == 0, "the broken request is given up")
        #expect(state.nextResponse() == nil, "the first answer is not ready")
        #expect(state.responseReady(id: 0, .text(200, "ok")) == true)
        let earlierAnswer = try state.answer()
        #expect(earlierAnswer.keepAlive)
        let error = try state.answer()
        #expect(error.response.status == 400 && !error.keepAlive)
        #expect(state.outputFlushed(parserIdle: false, readSuspended: true) == .linger)
    }
}

import Foundation
import PersistorTestSupport
import Testing

/// Limits and timeouts from the config file (docs/configuration.md#server): 413, 431, 408, idle close and
/// maxConnections, each while a well-behaved client on another connection keeps getting 204s.
@Suite("Limits and timeouts end to end")
struct LimitsTests {
    static let smallLimits = """
        server:
          maxBodyBytes: 1KiB
          maxHeaderBytes: 4KiB
          headerTimeout: 1s
          bodyTimeout: 1s
          idleTimeout: 2s
        """

    @Test("oversize body is 413 before it is sent, oversize head is 431")
    func sizeLimits() throws {
        let server = try PersistorProcess(config: Self.smallLimits)
        let steady = SteadyClient(port: server.port, name: "steady-sizes")
        defer { try? steady.stop() }

        step("Content-Length over the limit") {
            // Answered from the head alone: the body is never sent.
            let client = try server.connect(timeout: 5)
            try client.send("POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2048\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 413, "Content-Length 2048 over maxBodyBytes 1KiB: \(response.status) \(response.bodyText)")
            #expect(client.waitForClose(seconds: 3), "the unread body makes the connection unusable; the server must close it")
        }
        step("Expect: 100-continue with a body over the limit") {
            let client = try server.connect(timeout: 5)
            try client.send("POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 413)
            #expect(client.interimStatuses.isEmpty, "no 100 Continue for a body that will be refused")
        }
        step("chunked body growing over the limit") {
            let client = try server.connect(timeout: 5)
            try client.send(
                "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n200\r\n" + String(repeating: "a", count: 512) + "\r\n")
            try client.send("400\r\n")
            let response = try client.readResponse()
            #expect(response.status == 413, "chunked body over the limit: \(response.status)")
            #expect(client.waitForClose(seconds: 3))
        }
        step("body exactly at the limit") {
            let client = try server.connect(timeout: 5)
            let body = [UInt8](repeating: 0x61, count: 1024)
            let response = try client.perform("POST", "/pubsub", headers: [("x-goog-pubsub-message-id", "at-limit")], body: body)
            #expect(response.status == 204, "a 1024-byte body with maxBodyBytes 1KiB: \(response.status) \(response.bodyText)")
        }
        step("one header field over maxHeaderBytes") {
            let client = try server.connect(timeout: 5)
            try client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: \(String(repeating: "b", count: 5000))\r\n\r\n")
            let response = try client.readResponse()
            #expect(response.status == 431, "5 KB head over maxHeaderBytes 4KiB: \(response.status)")
            #expect(client.waitForClose(seconds: 3))
        }
        step("many small fields adding up over maxHeaderBytes") {
            let client = try server.connect(timeout: 5)
            let fields = (0..<100).map { "X-Attr-\($0): \(String(repeating: "v", count: 40))\r\n" }.joined()
            try client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\(fields)\r\n")
            #expect(try client.readResponse().status == 431)
        }

        steady.waitForAcks(3)
        try steady.stop()
        #expect(steady.failures.get().isEmpty, "the well-behaved client was disturbed: \(steady.failures.get())")
        #expect(steady.acked.get().count >= 3, "the well-behaved client got only \(steady.acked.get().count) answers")
        let counts = try archivedIDCounts(server.store)
        #expect(steady.acked.get().allSatisfy { counts[$0] == 1 }, "every acked steady message is archived")
        #expect(counts["at-limit"] == 1)
    }

    @Test("slow head, slow body and slowloris get 408; an idle keep-alive connection is closed")
    func timeouts() throws {
        let server = try PersistorProcess(config: Self.smallLimits)
        let steady = SteadyClient(port: server.port, name: "steady-timeouts")
        defer { try? steady.stop() }
        let port = server.port
        let problems = LockedBox([String]())
        let problem: @Sendable (String) -> Void = { text in problems.update { $0.append(text) } }

        try runOnThreads(4, timeout: 30) { scenario in
            do {
                let client = try RawHTTPClient(port: port, timeout: 8)
                let start = Date()
                switch scenario {
                case 0:
                    // Half a head, then silence.
                    try client.send("POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
                    let response = try client.readResponse()
                    let elapsed = secondsSince(start)
                    if response.status != 408 { problem("slow head: \(response.status) \(response.bodyText)") }
                    if elapsed < 0.9 || elapsed > 3.5 { problem("slow head: 408 after \(elapsed) s, headerTimeout is 1s") }
                    if !client.waitForClose(seconds: 3) { problem("slow head: connection left open after 408") }
                case 1:
                    // A full head, part of the body, then silence.
                    try client.send(
                        "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"message\":")
                    let response = try client.readResponse()
                    let elapsed = secondsSince(start)
                    if response.status != 408 { problem("slow body: \(response.status) \(response.bodyText)") }
                    if elapsed < 0.9 || elapsed > 3.5 { problem("slow body: 408 after \(elapsed) s, bodyTimeout is 1s") }
                    if !client.waitForClose(seconds: 3) { problem("slow body: connection left open after 408") }
                case 2:
                    // Slowloris: one header byte every 200 ms never completes the head in time.
                    let head = Array("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: \(String(repeating: "z", count: 100))\r\n\r\n".utf8)
                    var sent = 0
                    while sent < head.count && secondsSince(start) < 6 && client.pendingByteCount == 0 {
                        do { try client.send([head[sent]]) } catch { break }
                        sent += 1
                        usleep(200_000)
                    }
                    let response = try client.readResponse()
                    let elapsed = secondsSince(start)
                    if response.status != 408 { problem("slowloris: \(response.status) after \(sent) bytes") }
                    if elapsed > 3.5 { problem("slowloris: answered after \(elapsed) s, headerTimeout is 1s") }
                default:
                    // One request, then idle: closed after idleTimeout (2s), not before.
                    let response = try client.perform("GET", "/healthz")
                    if response.status != 200 { problem("idle: first request \(response.status)") }
                    let afterAnswer = Date()
                    if !client.waitForClose(seconds: 6) {
                        problem("idle: connection still open \(secondsSince(afterAnswer)) s after the last request, idleTimeout is 2s")
                    } else {
                        let elapsed = secondsSince(afterAnswer)
                        if elapsed < 1.5 || elapsed > 4.5 { problem("idle: closed after \(elapsed) s, idleTimeout is 2s") }
                    }
                }
            } catch {
                problem("scenario \(scenario): \(error)")
            }
        }
        for text in problems.get() { Issue.record(Comment(rawValue: text)) }

        steady.waitForAcks(10)
        try steady.stop()
        #expect(steady.failures.get().isEmpty, "the well-behaved client was disturbed: \(steady.failures.get())")
        #expect(steady.acked.get().count >= 10, "the well-behaved client got only \(steady.acked.get().count) answers")
        let counts = try archivedIDCounts(server.store)
        #expect(steady.acked.get().allSatisfy { counts[$0] == 1 }, "every acked steady message is archived")
    }

    @Test("timeouts still fire while other connections keep every event loop busy")
    func timeoutsUnderSustainedLoad() throws {
        let server = try PersistorProcess(config: Self.smallLimits)
        let port = server.port
        let stop = LockedBox(false)
        let answered = LockedBox(0)
        // Back-to-back requests on 8 keep-alive connections (connections are spread over the
        // event loops round-robin): a loop that handled events for as long as more kept coming
        // would never run its timeout sweep.
        let busy = BackgroundThread {
            try? runOnThreads(8, timeout: 60) { _ in
                guard let client = try? RawHTTPClient(port: port, timeout: 8) else { return }
                while !stop.get() {
                    guard let response = try? client.perform("GET", "/healthz"), response.status == 200 else { return }
                    answered.update { $0 += 1 }
                }
            }
        }
        defer {
            stop.set(true)
            try? busy.join(timeout: 30)
        }
        usleep(300_000)
        let before = answered.get()
        // Two half heads at once, one per loop.
        let answers = LockedBox([(status: Int, seconds: Double)]())
        let errors = LockedBox([String]())
        try runOnThreads(2, timeout: 30) { _ in
            do {
                let client = try RawHTTPClient(port: port, timeout: 8)
                let start = Date()
                try client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
                let response = try client.readResponse()
                answers.update { $0.append((response.status, secondsSince(start))) }
            } catch {
                errors.update { $0.append("\(error)") }
            }
        }
        let during = answered.get() - before
        #expect(during > 100, "the busy connections got only \(during) answers meanwhile")
        #expect(errors.get().isEmpty, "\(errors.get())")
        for answer in answers.get() {
            #expect(
                answer.status == 408 && answer.seconds >= 0.9 && answer.seconds <= 3.5,
                "\(answer.status) after \(answer.seconds) s; headerTimeout is 1s")
        }
    }

    @Test("beyond maxConnections new connections get 503 and are closed; existing ones keep working")
    func maxConnections() throws {
        // No probe reserve here: HostileClientTests covers the connections kept for health checks.
        let server = try PersistorProcess(config: "server:\n  maxConnections: 5\n  probeConnections: 0\n")
        var open: [RawHTTPClient] = []
        for index in 0..<5 {
            // The start-up health probe's connection may still be counted for a moment.
            var attempt = 0
            while true {
                attempt += 1
                let client = try server.connect(timeout: 5)
                // A refused connection may be reset before its 503 is read: that counts as refused too.
                let response = try? client.perform("GET", "/healthz")
                if response?.status == 200 {
                    open.append(client)
                    break
                }
                try #require(
                    (response == nil || response?.status == 503) && attempt < 20,
                    "connection \(index + 1) of 5: \(response.map { "\($0.status)" } ?? "no answer")")
                usleep(100_000)
            }
        }
        for extra in 6...7 {
            let client = try server.connect(timeout: 5)
            let response = try client.readResponse()
            #expect(response.status == 503, "connection \(extra) over maxConnections 5: \(response.status)")
            #expect(response.header("Retry-After") != nil, "a 503 carries Retry-After")
            #expect(client.waitForClose(seconds: 3), "connection \(extra) must be closed")
        }
        for (index, client) in open.enumerated() {
            let response = try client.perform(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: "maxconn-\(index)", data: Array("kept".utf8)))
            #expect(response.status == 204, "existing connection \(index + 1): \(response.status)")
        }
        // A slot frees up when a connection closes.
        open.removeLast().close()
        var served = false
        for _ in 0..<30 where !served {
            let client = try server.connect(timeout: 5)
            if (try? client.perform("GET", "/healthz"))?.status == 200 { served = true } else { usleep(100_000) }
        }
        #expect(served, "after one of the 5 connections closed, a new one must be served")
        let counts = try archivedIDCounts(server.store)
        #expect((0..<5).allSatisfy { counts["maxconn-\($0)"] == 1 })
    }
}

import Foundation
import PersistorTestSupport
import Testing

/// HTTP/1.1 behaviour of the real server over raw sockets: keep-alive, pipelining, HEAD, status
/// answers, connection closing, HTTP/1.0, `Expect: 100-continue`, chunked bodies, `Date`.
@Suite("HTTP/1.1 behaviour end to end")
struct HTTPBehaviourTests {
    @Test("50 requests on one keep-alive connection are all answered 204 and archived")
    func keepAlive() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        let ids = (0..<50).map { "keepalive-\($0)" }
        for id in ids {
            let response = try client.perform(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: id, data: Array("message \(id)".utf8)))
            #expect(response.status == 204, "\(id): \(response.status) \(response.bodyText)")
            #expect(!response.closesConnection, "\(id): the server must keep the connection open")
            #expect(response.header("Date").map(isIMFFixdate) == true, "\(id): Date header")
        }
        #expect(!client.isClosedByPeer)
        let counts = try archivedIDCounts(server.store)
        for id in ids { #expect(counts[id] == 1, "\(id) archived \(counts[id] ?? 0) times") }
    }

    @Test("pipelined requests written in one send() are answered in request order")
    func pipelining() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        // 20 POSTs with GETs in between: the GETs are answered at once by the server, the POSTs
        // only after the archive write, so any reordering shows in the statuses.
        var wire: [UInt8] = []
        var expected: [(String, Int)] = []
        var ids: [String] = []
        for index in 0..<20 {
            let id = "pipelined-\(index)"
            ids.append(id)
            wire += pubsubPost(id: id, payload: Array("pipelined message \(index)".utf8))
            expected.append(("POST \(id)", 204))
            if index % 3 == 0 {
                wire += RawHTTPClient.request("GET", "/healthz")
                expected.append(("GET /healthz after \(id)", 200))
            }
            if index % 7 == 0 {
                wire += RawHTTPClient.request("GET", "/no-such-path")
                expected.append(("GET /no-such-path after \(id)", 404))
            }
        }
        try client.send(wire)
        for (name, status) in expected {
            let response = try client.readResponse()
            #expect(response.status == status, "\(name): got \(response.status) \(response.bodyText)")
            #expect(response.header("Date").map(isIMFFixdate) == true, "\(name): Date header")
        }
        #expect(!client.isClosedByPeer, "the connection stays open after pipelined requests")
        let counts = try archivedIDCounts(server.store)
        for id in ids { #expect(counts[id] == 1, "\(id) archived \(counts[id] ?? 0) times") }
    }

    @Test("100 pipelined requests in one write, more than the server takes at once, all answered in order")
    func deepPipeline() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        var wire: [UInt8] = []
        var expected: [Int] = []
        for index in 0..<100 {
            wire += pubsubPost(id: "deep-\(index)", payload: Array("deep \(index)".utf8))
            expected.append(204)
            if index % 10 == 9 {
                wire += RawHTTPClient.request("GET", "/readyz")
                expected.append(200)
            }
        }
        try client.send(wire)
        var statuses: [Int] = []
        for _ in expected { statuses.append(try client.readResponse().status) }
        #expect(statuses == expected)
        let counts = try archivedIDCounts(server.store)
        #expect((0..<100).allSatisfy { counts["deep-\($0)"] == 1 }, "every pipelined message archived once")
    }

    @Test("HEAD, health, readiness, 404 and 405 answers")
    func smallAnswers() throws {
        let server = try PersistorProcess()
        let client = try server.connect()

        let head = try client.perform("HEAD", "/healthz")
        #expect(head.status == 200)
        let headLength = try #require(head.header("Content-Length").flatMap(Int.init), "HEAD /healthz must carry Content-Length")
        #expect(headLength > 0)
        #expect(head.body.isEmpty)
        usleep(200_000)
        #expect(client.pendingByteCount == 0, "HEAD response must not be followed by body bytes")
        let get = try client.perform("GET", "/healthz")
        #expect(get.status == 200)
        #expect(get.body.count == headLength, "HEAD announces the length GET sends")

        let ready = try client.perform("GET", "/readyz")
        #expect(ready.status == 200, "readyz: \(ready.status) \(ready.bodyText)")

        let missing = try client.perform("GET", "/no-such-path")
        #expect(missing.status == 404)

        let wrongMethod = try client.perform("GET", "/pubsub")
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.header("Allow") == "POST", "Allow: \(wrongMethod.header("Allow") ?? "missing")")

        let deleteHealth = try client.perform("DELETE", "/healthz")
        #expect(deleteHealth.status == 405)
        let allow = Set((deleteHealth.header("Allow") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(allow == ["GET", "HEAD"], "Allow for /healthz: \(allow)")

        for response in [head, get, ready, missing, wrongMethod, deleteHealth] {
            #expect(response.header("Date").map(isIMFFixdate) == true, "\(response.status): Date header")
        }
        // All of those kept the connection usable.
        let last = try client.perform(
            "POST", "/pubsub", headers: [("Content-Type", "application/json")],
            body: wrappedEnvelope(id: "after-small-answers", data: Array("x".utf8)))
        #expect(last.status == 204)
    }

    @Test("Connection: close is honoured: the response says so and the server closes")
    func connectionClose() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        let response = try client.perform(
            "POST", "/pubsub", headers: [("Content-Type", "application/json"), ("Connection", "close")],
            body: wrappedEnvelope(id: "conn-close", data: Array("bye".utf8)))
        #expect(response.status == 204)
        #expect(response.closesConnection, "response headers: \(response.headers)")
        #expect(client.waitForClose(seconds: 3), "the server must close after a Connection: close request")
        #expect(try archivedIDCounts(server.store)["conn-close"] == 1)

        // Requests pipelined after the Connection: close request are not answered.
        let second = try server.connect()
        try second.send(
            RawHTTPClient.request("GET", "/healthz", headers: [("Connection", "close")])
                + RawHTTPClient.request("GET", "/healthz"))
        let first = try second.readResponse()
        #expect(first.status == 200 && first.closesConnection)
        let rest = try second.readUntilClosed()
        #expect(rest.isEmpty, "nothing may follow the last response: \(String(decoding: rest, as: UTF8.self))")
    }

    @Test("HTTP/1.0: closed after the response unless keep-alive is asked for")
    func http10() throws {
        // (Also runs the server with JSON logs: start-up must find its JSON "persistor serving" line.)
        let server = try PersistorProcess(arguments: ["--log-format", "json"])
        let serving = server.log.split(separator: "\n").first { $0.contains("persistor serving") }
        #expect(
            serving.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }?["address"] as? String
                == "127.0.0.1:\(server.port)", "JSON log line: \(serving ?? "missing")")

        let plain = try server.connect()
        try plain.send("GET /healthz HTTP/1.0\r\n\r\n")
        let response = try plain.readResponse()
        #expect(response.status == 200)
        #expect(response.header("Date").map(isIMFFixdate) == true)
        #expect(plain.waitForClose(seconds: 3), "an HTTP/1.0 connection without keep-alive must be closed")

        let post = try server.connect()
        try post.send(
            RawHTTPClient.request(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: "http10-post", data: Array("1.0".utf8)), version: "HTTP/1.0"))
        #expect(try post.readResponse().status == 204)
        #expect(post.waitForClose(seconds: 3))
        #expect(try archivedIDCounts(server.store)["http10-post"] == 1)

        let keepAlive = try server.connect()
        try keepAlive.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        let first = try keepAlive.readResponse()
        #expect(first.status == 200)
        #expect(first.header("Connection")?.lowercased() == "keep-alive", "HTTP/1.0 keep-alive must be confirmed")
        try keepAlive.send("GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(try keepAlive.readResponse().status == 200)
    }

    @Test("Expect: 100-continue gets 100 Continue before the body is sent, then 204")
    func expectContinue() throws {
        let server = try PersistorProcess()
        let client = try server.connect(timeout: 5)
        let body = wrappedEnvelope(id: "expect-continue", data: Array("continued".utf8))
        try client.send(
            "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: \(body.count)\r\n\r\n"
        )
        let interim = try client.readResponse(returnInterim: true)
        #expect(interim.status == 100, "expected 100 Continue before sending the body, got \(interim.status)")
        try client.send(body)
        let final = try client.readResponse()
        #expect(final.status == 204)
        #expect(final.header("Date").map(isIMFFixdate) == true)
        #expect(try archivedIDCounts(server.store)["expect-continue"] == 1)
    }

    @Test("an absolute-form request target is routed like its origin form (RFC 9112 §3.2.2)")
    func absoluteFormTarget() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        let health = try client.perform("GET", "http://127.0.0.1:\(server.port)/healthz", headers: [("Host", "127.0.0.1:\(server.port)")])
        #expect(health.status == 200, "GET http://…/healthz: \(health.status) \(health.bodyText)")
        let post = try server.connect()
        let response = try post.perform(
            "POST", "http://127.0.0.1:\(server.port)/pubsub?token=t",
            headers: [("Host", "127.0.0.1:\(server.port)"), ("Content-Type", "application/json")],
            body: wrappedEnvelope(id: "absolute-form", data: Array("absolute".utf8)))
        #expect(response.status == 204, "POST http://…/pubsub: \(response.status) \(response.bodyText)")
        #expect(try archivedIDCounts(server.store)["absolute-form"] == 1)
    }

    @Test("a chunked request body is archived exactly")
    func chunkedBody() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        let payload = pseudoRandomBytes(count: 70_000, seed: 7)
        let pieces = [payload[0..<5], payload[5..<1005], payload[1005..<1006], payload[1006...]]
        var wire = Array(
            "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nx-goog-pubsub-message-id: chunked-1\r\nx-goog-pubsub-subscription-name: projects/p/subscriptions/s\r\n\r\n"
                .utf8)
        for (index, piece) in pieces.enumerated() {
            wire += Array((String(piece.count, radix: 16) + (index == 1 ? ";ext=1" : "") + "\r\n").utf8) + piece + Array("\r\n".utf8)
        }
        wire += Array("0\r\nX-Trailer: t\r\n\r\n".utf8)
        // Send in several writes, splitting inside chunk-size lines and data.
        for range in stride(from: 0, to: wire.count, by: 4099) {
            try client.send(Array(wire[range..<min(range + 4099, wire.count)]))
        }
        let response = try client.readResponse()
        #expect(response.status == 204, "\(response.status) \(response.bodyText)")
        let records = try allRecords(server.store).filter { $0.id == "chunked-1" }
        try #require(records.count == 1)
        #expect(records[0].payload == payload, "chunked body must be archived byte for byte")
        #expect(records[0].attributes == [:], "Transfer-Encoding is not an attribute: \(String(describing: records[0].attributes))")
    }
}

/// Malformed requests: 400 and close, and the server keeps serving everyone else.
@Suite("Malformed HTTP end to end")
struct MalformedHTTPTests {
    static let cases: [(String, String)] = [
        (
            "Content-Length with Transfer-Encoding",
            "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
        ("obs-fold header", "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Folded: a\r\n  b\r\nContent-Length: 2\r\n\r\n{}"),
        ("two different Content-Length", "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
        ("non-numeric Content-Length", "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2x\r\n\r\n{}"),
        ("bare LF line ends", "POST /pubsub HTTP/1.1\nHost: 127.0.0.1\nContent-Length: 2\n\n{}"),
        ("HTTP/1.1 without Host", "GET /healthz HTTP/1.1\r\n\r\n"),
        ("space before the colon", "GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n"),
        ("garbage request line", "HELLO THERE\r\n\r\n"),
    ]

    /// Framing errors found only after the head was accepted, while reading the body.
    static let bodyCases: [(String, String)] = [
        ("bad chunk size", "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("chunk data not followed by CRLF", "POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ]

    @Test("malformed requests get 400 and a closed connection; other clients are unaffected")
    func malformed() throws {
        let server = try PersistorProcess()
        let bystander = try server.connect()
        #expect(try bystander.perform("GET", "/healthz").status == 200)

        for (name, wire) in Self.cases {
            let client = try server.connect(timeout: 5)
            try client.send(wire)
            do {
                let response = try client.readResponse()
                #expect(response.status == 400, "\(name): got \(response.status) \(response.bodyText)")
                #expect(response.closesConnection, "\(name): a 400 must say Connection: close")
                #expect(response.header("Date").map(isIMFFixdate) == true, "\(name): Date header")
            } catch {
                Issue.record("\(name): no response: \(error)")
            }
            #expect(client.waitForClose(seconds: 3), "\(name): the server must close the connection")
        }

        // A valid request pipelined behind a bad one is never processed.
        let smuggler = try server.connect(timeout: 5)
        try smuggler.send(Self.cases[0].1 + String(decoding: pubsubPost(id: "smuggled", payload: Array("x".utf8)), as: UTF8.self))
        #expect(try smuggler.readResponse().status == 400)
        #expect(smuggler.waitForClose(seconds: 3))

        let response = try bystander.perform(
            "POST", "/pubsub", headers: [("Content-Type", "application/json")],
            body: wrappedEnvelope(id: "bystander", data: Array("still here".utf8)))
        #expect(response.status == 204, "an open connection keeps working after other clients' errors")
        let fresh = try server.connect()
        #expect(try fresh.perform("GET", "/healthz").status == 200, "new connections are still served")

        let counts = try archivedIDCounts(server.store)
        #expect(counts["bystander"] == 1)
        #expect(counts["smuggled"] == nil, "a request after a framing error must not be archived")
        #expect(counts.count == 1, "malformed requests archive nothing: \(counts)")
    }

    @Test("a framing error inside a chunked body is answered 400, closes, frees its slot and does not hold up shutdown")
    func malformedBody() throws {
        let server = try PersistorProcess(config: "server:\n  maxConnections: 3\n  shutdownGrace: 3s\n")
        for (name, wire) in Self.bodyCases {
            let client = try server.connect(timeout: 4)
            try client.send(wire)
            step(name) {
                let response = try client.readResponse()
                #expect(response.status == 400, "\(name): got \(response.status) \(response.bodyText)")
                #expect(response.closesConnection, "\(name): a 400 must say Connection: close")
            }
            #expect(client.waitForClose(seconds: 2), "\(name): the server must close the connection")
            client.close()
        }

        // Both clients gave up and closed their sockets: their slots must be free again.
        var served: [RawHTTPClient] = []
        let deadline = Date().addingTimeInterval(2)
        while served.count < 3 && Date() < deadline {
            let client = try server.connect(timeout: 2)
            if (try? client.perform("GET", "/healthz"))?.status == 200 { served.append(client) } else { usleep(100_000) }
        }
        #expect(
            served.count == 3,
            "with maxConnections 3 only \(served.count) new connections were served: connections closed by their clients after a body framing error still hold a slot"
        )
        served.forEach { $0.close() }

        let signalled = Date()
        server.terminate()
        let status = try server.waitForExit(timeout: 10)
        #expect(status == 0, "exit status after SIGTERM; log:\n\(server.log)")
        #expect(secondsSince(signalled) < 3.5, "shutdown took \(secondsSince(signalled)) s")
    }
}

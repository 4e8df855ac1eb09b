import Foundation
import PersistorHTTP
import PersistorTestSupport
import Testing

/// HTTP/2 cleartext on the HTTP/1.1 listener: our `HTTPServer` on a real loopback socket, driven by
/// the Python `h2` library (Tests/tools/h2_client.py), which is an implementation independent of nghttp2.
@Suite(.serialized) struct HTTP2Tests {
    /// A server with small limits and routes that show what a request looked like, answer later,
    /// or hold their answers until released.
    final class Fixture: @unchecked Sendable {
        let server: HTTPServer
        let port: Int
        /// Answers of `/hold` requests, in arrival order, with the body sizes they came with.
        let held = LockedBox([(size: Int, respond: @Sendable (HTTPResponse) -> Void)]())
        /// Requests that reached `/count`.
        let counted = LockedBox(0)

        init(
            maxHeaderBytes: Int = 4096, maxBodyBytes: Int = 64 * 1024, maxConcurrentStreams: Int = 10,
            bodyTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60)
        ) throws {
            var router = Router()
            router.add(
                "/echo",
                Router.Route(methods: ["GET", "POST"], maxBodyBytes: 4096) { request, respond in
                    let head = request.head
                    var description: [String: Any] = [
                        "method": head.method, "target": head.target, "path": String(head.path),
                        "headers": head.headers.fields.map { [$0.name, $0.value] },
                        "body_b64": Data(request.body).base64EncodedString(),
                    ]
                    description["query"] = head.query.map { String($0) }
                    description["host"] = head.headers["host"]
                    let json = try! JSONSerialization.data(withJSONObject: description, options: [.sortedKeys])
                    respond(
                        HTTPResponse(
                            status: 200, headers: HTTPHeaders([("Content-Type", "application/json"), ("X-Echo", "yes")]),
                            body: [UInt8](json)))
                })
            router.add("/ok", Router.Route(methods: ["GET"]) { _, respond in respond(.text(200, "ok")) })
            router.add(
                "/late",
                Router.Route(methods: ["POST"]) { request, respond in
                    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) {
                        respond(HTTPResponse(status: 201, body: Array("late \(request.body.count)".utf8)))
                    }
                })
            let held = self.held, counted = self.counted
            router.add(
                "/hold",
                Router.Route(methods: ["POST"]) { request, respond in
                    held.update { $0.append((request.body.count, respond)) }
                })
            router.add(
                "/count",
                Router.Route(methods: ["POST"]) { _, respond in
                    counted.update { $0 += 1 }
                    respond(HTTPResponse(status: 204))
                })
            server = HTTPServer(
                settings: HTTPServerSettings(
                    host: "127.0.0.1", port: 0,
                    limits: HTTPParserLimits(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes),
                    bodyTimeout: bodyTimeout, idleTimeout: idleTimeout, loops: 2, maxConcurrentStreams: maxConcurrentStreams), service: router)
            port = try server.start()
        }

        /// Answers every held request 204.
        func releaseHeld() {
            let entries = held.update { list in
                let taken = list
                list = []
                return taken
            }
            for entry in entries { entry.respond(HTTPResponse(status: 204)) }
        }

        func waitForHeld(_ count: Int, timeout: Double = 10) -> Bool {
            let deadline = Date().addingTimeInterval(timeout)
            while held.get().count < count {
                if Date() > deadline { return false }
                usleep(10_000)
            }
            return true
        }

        func stop() async {
            server.stopAccepting()
            server.drainConnections()
            _ = await server.waitForConnections(until: .now + .seconds(5))
        }
    }

    struct Request {
        var method = "GET"
        var path = "/ok"
        var headers: [(String, String)] = []
        var body: [UInt8] = []

        var json: [String: Any] {
            [
                "method": method, "path": path, "headers": headers.map { [$0.0, $0.1] },
                "body_b64": Data(body).base64EncodedString(),
            ]
        }
    }

    struct Response {
        let status: Int?
        let headers: [(String, String)]
        let body: [UInt8]
        let reset: Int?
        let informational: [Int]

        init(_ object: [String: Any]) {
            status = object["status"] as? Int
            headers = (object["headers"] as? [[String]] ?? []).map { ($0[0], $0[1]) }
            body = Data(base64Encoded: object["body_b64"] as? String ?? "").map { [UInt8]($0) } ?? []
            reset = object["reset"] as? Int
            informational = object["informational"] as? [Int] ?? []
        }

        func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
        var text: String { String(decoding: body, as: UTF8.self) }
        var echo: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any]) ?? [:] }
    }

    static func runClient(_ arguments: [String], input: [String: Any]? = nil) throws -> [String: Any] {
        let stdin = try input.map { [UInt8](try JSONSerialization.data(withJSONObject: $0)) } ?? []
        let result = try runProcess(try testPython(), [repositoryRoot + "/Tests/tools/h2_client.py"] + arguments, input: stdin)
        guard result.status == 0 else { throw TestFailure("h2_client.py \(arguments) failed: \(result.stderr)") }
        let lines = result.stdout.split(separator: 0x0A)
        guard let last = lines.last, let object = try JSONSerialization.jsonObject(with: Data(last)) as? [String: Any] else {
            throw TestFailure("h2_client.py printed no JSON: \(String(decoding: result.stdout, as: UTF8.self))")
        }
        return object
    }

    /// Sends `requests` over one HTTP/2 connection (prior knowledge, or upgrade by the first one).
    static func exchange(
        _ port: Int, _ requests: [Request], upgrade: Bool = false,
        concurrency: Int = 100
    ) throws -> (responses: [Response], output: [String: Any]) {
        let output = try runClient(
            ["requests", "--port", String(port)] + (upgrade ? ["--upgrade"] : []),
            input: ["requests": requests.map(\.json), "concurrency": concurrency])
        let responses = (output["responses"] as? [[String: Any]] ?? []).map(Response.init)
        return (responses, output)
    }

    @Test func priorKnowledgeStreamsBecomeTheSameRequestsAsHTTP1() async throws {
        let fixture = try Fixture()
        let body = Array("{\"hello\":\"h2\"}".utf8)
        let (responses, output) = try Self.exchange(
            fixture.port,
            [
                Request(method: "GET", path: "/echo?x=1&y=%20", headers: [("x-custom", "Value One"), ("x-utf8", "grüße")]),
                Request(method: "POST", path: "/echo", headers: [("content-type", "application/json")], body: body),
                Request(method: "POST", path: "/late", body: [UInt8](repeating: 7, count: 3000)),
                Request(method: "GET", path: "/nope"),
                Request(method: "PUT", path: "/ok"),
            ])
        try #require(responses.count == 5, "\(output)")
        let settings = output["server_settings"] as? [String: Int] ?? [:]
        #expect(settings["3"] == 10, "SETTINGS_MAX_CONCURRENT_STREAMS is the configured limit")
        #expect(settings["6"] == 4096, "SETTINGS_MAX_HEADER_LIST_SIZE is maxHeaderBytes")

        let get = responses[0]
        #expect(get.status == 200)
        #expect(get.header("content-type") == "application/json")
        #expect(get.header("x-echo") == "yes", "handler headers go out with lowercase names")
        #expect(get.header("content-length") == String(get.body.count))
        #expect(get.header("date").map { $0.hasSuffix(" GMT") } == true)
        let echo = get.echo
        #expect(echo["method"] as? String == "GET")
        #expect(echo["target"] as? String == "/echo?x=1&y=%20")
        #expect(echo["path"] as? String == "/echo")
        #expect(echo["query"] as? String == "x=1&y=%20")
        #expect(echo["host"] as? String == "127.0.0.1", ":authority becomes host")
        let fields = (echo["headers"] as? [[String]] ?? []).map { ($0[0], $0[1]) }
        #expect(fields.first.map { $0 == ("host", "127.0.0.1") } == true)
        #expect(fields.contains { $0 == ("x-custom", "Value One") })
        #expect(fields.contains { $0 == ("x-utf8", "grüße") })
        #expect(!fields.contains { $0.0.hasPrefix(":") }, "no pseudo-header reaches the service")

        let post = responses[1]
        #expect(post.status == 200)
        #expect(Data(base64Encoded: post.echo["body_b64"] as? String ?? "") == Data(body))
        #expect(responses[2].status == 201)
        #expect(responses[2].text == "late 3000", "an answer given later on another thread reaches its stream")
        #expect(responses[3].status == 404)
        #expect(responses[4].status == 405)
        #expect(responses[4].header("allow") == "GET, HEAD")
        #expect(output["goaway"] is NSNull)
        await fixture.stop()
    }

    @Test func upgradeAnswers101AndServesTheRequestOnStream1() async throws {
        let fixture = try Fixture()
        let body = [UInt8](repeating: 0x61, count: 1000)
        let (responses, output) = try Self.exchange(
            fixture.port,
            [
                Request(method: "POST", path: "/echo?via=upgrade", headers: [("X-First", "1")], body: body),
                Request(method: "GET", path: "/echo"),
            ], upgrade: true)
        #expect(output["upgrade_status"] as? Int == 101, "\(output)")
        try #require(responses.count == 2)
        #expect(responses[0].status == 200)
        let echo = responses[0].echo
        #expect(echo["target"] as? String == "/echo?via=upgrade")
        #expect(Data(base64Encoded: echo["body_b64"] as? String ?? "") == Data(body))
        let names = (echo["headers"] as? [[String]] ?? []).map { $0[0].lowercased() }
        #expect(names.contains("x-first"))
        #expect(
            !names.contains("upgrade") && !names.contains("http2-settings") && !names.contains("connection"),
            "the fields that only served the upgrade are gone")
        #expect(responses[1].status == 200, "later streams are served on the upgraded connection")
        await fixture.stop()
    }

    @Test func http1IsUnchangedAndLargeOrMalformedUpgradesStayHTTP1() async throws {
        let fixture = try Fixture(maxBodyBytes: 256 * 1024)
        let client = try RawHTTPClient(port: fixture.port)
        let plain = try client.perform("GET", "/ok")
        #expect(plain.status == 200 && plain.version == "HTTP/1.1")
        // Upgrade on a later request of the connection: not taken.
        let later = try client.perform(
            "GET", "/ok",
            headers: [
                ("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ])
        #expect(later.status == 200 && later.version == "HTTP/1.1")
        // No HTTP2-Settings: not an h2c upgrade.
        let bare = try RawHTTPClient(port: fixture.port)
        let noSettings = try bare.perform("GET", "/ok", headers: [("Connection", "Upgrade"), ("Upgrade", "h2c")])
        #expect(noSettings.status == 200 && noSettings.version == "HTTP/1.1")
        // A body over 64 KiB is answered over HTTP/1.1.
        let large = try RawHTTPClient(port: fixture.port)
        try large.send(
            RawHTTPClient.request(
                "POST", "/hold",
                headers: [
                    ("Connection", "Upgrade, HTTP2-Settings"),
                    ("Upgrade", "h2c"), ("HTTP2-Settings", ""),
                ],
                body: [UInt8](repeating: 1, count: 70_000)))
        #expect(fixture.waitForHeld(1))
        fixture.releaseHeld()
        let answer = try large.readResponse()
        #expect(answer.status == 204 && answer.version == "HTTP/1.1")
        await fixture.stop()
    }

    @Test func headerAndBodyLimitsAnswerOnTheStreamAndTheConnectionGoesOn() async throws {
        let fixture = try Fixture(maxHeaderBytes: 4096, maxBodyBytes: 64 * 1024)
        let (responses, output) = try Self.exchange(
            fixture.port,
            [
                Request(method: "GET", path: "/ok", headers: [("x-big", String(repeating: "a", count: 5000))]),
                Request(method: "GET", path: "/ok", headers: (0..<300).map { ("x-f\($0)", "v") }),
                Request(method: "POST", path: "/echo", headers: [("content-length", "5000")], body: [UInt8](repeating: 1, count: 5000)),
                Request(method: "POST", path: "/hold", body: [UInt8](repeating: 2, count: 100_000)),
                Request(method: "GET", path: "/ok"),
            ], concurrency: 1)
        try #require(responses.count == 5, "\(output)")
        #expect(responses[0].status == 431, "header list over maxHeaderBytes")
        #expect(responses[1].status == 431, "more fields than the HTTP/1.1 parser allows")
        #expect(responses[2].status == 413, "Content-Length over the route's limit, answered from the head")
        #expect(responses[2].text.contains("limit 4096"))
        // No Content-Length: refused before more than the server limit is buffered.
        #expect(responses[3].status == 413 || responses[3].reset != nil, "\(responses[3])")
        #expect(fixture.held.get().isEmpty, "the oversized body never reached the service")
        #expect(responses[4].status == 200, "the connection still serves")
        await fixture.stop()
    }

    @Test func streamsBeyondTheLimitAreRefused() async throws {
        let fixture = try Fixture(maxConcurrentStreams: 10)
        let output = try Self.runClient(["streams", "--port", String(fixture.port), "--count", "12", "--path", "/hold"])
        let resets = output["resets"] as? [String: Int] ?? [:]
        let goaway = output["goaway"] as? [String: Any]
        // RFC 9113 §5.1.2: a stream error of type REFUSED_STREAM (7) or PROTOCOL_ERROR (1).
        let refused = resets.filter { $0.value == 7 || $0.value == 1 }.count
        let connectionError = (goaway?["error_code"] as? Int).map { $0 == 1 } ?? false
        #expect(refused >= 2 || connectionError, "\(output)")
        #expect(resets["1"] == nil, "streams within the limit are not refused: \(output)")
        fixture.releaseHeld()
        await fixture.stop()
    }

    @Test func resetMidBodyDropsTheRequestAndTheConnectionGoesOn() async throws {
        let fixture = try Fixture()
        let output = try Self.runClient(["reset", "--port", String(fixture.port), "--path", "/count"])
        let responses = (output["responses"] as? [[String: Any]] ?? []).map(Response.init)
        try #require(responses.count == 2, "\(output)")
        #expect(responses[0].status == nil, "the reset stream gets no answer")
        #expect(responses[1].status == 200, "the stream after the reset is served")
        #expect(fixture.counted.get() == 0, "the reset request never reached the service")
        #expect(output["goaway"] is NSNull)
        await fixture.stop()
    }

    @Test func malformedFrameGetsGoawayAndTheServerServesTheNextConnection() async throws {
        let fixture = try Fixture()
        let output = try Self.runClient(["malformed", "--port", String(fixture.port)])
        let goaway = try #require(output["goaway"] as? [String: Any], "\(output)")
        #expect(goaway["error_code"] as? Int == 6, "FRAME_SIZE_ERROR for a SETTINGS length not a multiple of 6")
        #expect(output["closed"] as? Bool == true, "the server closes the connection")
        let (responses, _) = try Self.exchange(fixture.port, [Request(method: "GET", path: "/ok")])
        #expect(responses.first?.status == 200)
        let client = try RawHTTPClient(port: fixture.port)
        #expect(try client.perform("GET", "/ok").status == 200)
        await fixture.stop()
    }

    @Test func aSlowServiceSlowsTheSenderInsteadOfGrowingMemory() async throws {
        // Budget: 64 KiB of bodies held; 8 streams × 32 KiB want to send 256 KiB.
        let fixture = try Fixture(maxBodyBytes: 64 * 1024)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try testPython())
        process.arguments = [
            repositoryRoot + "/Tests/tools/h2_client.py", "flow", "--port", String(fixture.port),
            "--count", "8", "--size", String(32 * 1024),
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let reader = pipe.fileHandleForReading
        var buffer = Data()
        func nextLine() -> [String: Any]? {
            while true {
                if let newline = buffer.firstIndex(of: 0x0A) {
                    let line = buffer[buffer.startIndex..<newline]
                    buffer = Data(buffer[(newline + 1)...])
                    return try? JSONSerialization.jsonObject(with: line) as? [String: Any]
                }
                let chunk = reader.availableData
                if chunk.isEmpty { return nil }
                buffer.append(chunk)
            }
        }
        let blocked = try #require(nextLine(), "the client reports when it is blocked")
        let sent = try #require(blocked["blocked"] as? Int, "\(blocked)")
        let heldBytes = fixture.held.get().reduce(0) { $0 + $1.size }
        #expect(sent < 8 * 32 * 1024, "the sender was stopped before sending everything")
        #expect(sent <= 64 * 1024 + 65_535 + 32 * 1024, "at most the budget plus one connection window: \(sent)")
        #expect(heldBytes <= sent)
        fixture.releaseHeld()
        // Releasing lets the rest through; later requests are held again and released as they come.
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline {
            fixture.releaseHeld()
            usleep(20_000)
        }
        let final = try #require(nextLine(), "the client's final report")
        process.waitUntilExit()
        let responses = (final["responses"] as? [[String: Any]] ?? []).map(Response.init)
        #expect(responses.count == 8)
        #expect(responses.allSatisfy { $0.status == 204 }, "\(final)")
        await fixture.stop()
    }

    @Test func aStalledBodyIsAnswered408AndAnIdleConnectionIsClosedWithGoaway() async throws {
        let fixture = try Fixture(bodyTimeout: .seconds(1), idleTimeout: .seconds(2))
        let started = Date()
        let output = try Self.runClient([
            "streams", "--port", String(fixture.port), "--count", "1", "--path", "/echo",
            "--seconds", "8",
        ])
        #expect((output["statuses"] as? [String: Int])?["1"] == 408, "\(output)")
        let goaway = try #require(output["goaway"] as? [String: Any], "\(output)")
        #expect(goaway["error_code"] as? Int == 0)
        #expect(output["closed"] as? Bool == true)
        #expect(Date().timeIntervalSince(started) < 7, "closed by the idle timeout, not by the client")
        await fixture.stop()
    }

    @Test("a client whose flow-control window stays 0 cannot hold its stream or connection")
    func aZeroWindowDoesNotHoldTheConnection() async throws {
        let fixture = try Fixture(idleTimeout: .seconds(1))
        let output = try Self.runClient(["zerowindow", "--port", String(fixture.port), "--path", "/ok", "--seconds", "10"])
        #expect((output["statuses"] as? [String: Int])?["1"] == 200, "the head goes out, the body cannot: \(output)")
        #expect((output["resets"] as? [String: Int])?["1"] == 8, "the stalled stream is reset with CANCEL: \(output)")
        #expect(output["closed"] as? Bool == true, "then the idle connection is closed: \(output)")
        let elapsed = output["elapsed"] as? Double ?? .infinity
        #expect(elapsed < 6, "closed after \(elapsed) s; a stall of idleTimeout (1 s) ends the stream, idleTimeout more the connection")
        await fixture.stop()
    }

    @Test("a flood of empty DATA frames ends the connection with ENHANCE_YOUR_CALM (CVE-2019-9518)")
    func emptyDataFramesFloodIsRefused() async throws {
        let fixture = try Fixture()
        let output = try Self.runClient([
            "emptydata", "--port", String(fixture.port), "--path", "/count",
            "--count", "100000", "--seconds", "5",
        ])
        let goaway = try #require(output["goaway"] as? [String: Any], "\(output)")
        #expect(goaway["error_code"] as? Int == 11, "ENHANCE_YOUR_CALM: \(output)")
        #expect(output["closed"] as? Bool == true)
        // A few in a row are tolerated.
        let few = try Self.runClient([
            "emptydata", "--port", String(fixture.port), "--path", "/count",
            "--count", "5", "--seconds", "1",
        ])
        #expect(few["goaway"] is NSNull || few["goaway"] == nil, "5 empty frames are allowed: \(few)")
        await fixture.stop()
    }

    @Test("a drain announced first sends a GOAWAY notice and still serves new streams")
    func announcedShutdownStillServesNewStreams() async throws {
        let fixture = try Fixture()
        fixture.server.announceShutdown()
        try await Task.sleep(for: .milliseconds(100))
        let output = try Self.runClient([
            "streams", "--port", String(fixture.port), "--count", "2", "--end",
            "--path", "/count", "--seconds", "2",
        ])
        let goaway = try #require(output["goaway"] as? [String: Any], "\(output)")
        #expect(goaway["error_code"] as? Int == 0)
        #expect(goaway["last_stream_id"] as? Int == 2_147_483_647, "the notice names the largest stream id (RFC 9113 §6.8)")
        #expect(output["statuses"] as? [String: Int] == ["1": 204, "3": 204], "streams are still served: \(output)")
        #expect(output["closed"] as? Bool == false, "the connection stays until the drain finishes")
        await fixture.stop()
    }

    @Test func drainSendsGoawayAndLetsOpenStreamsFinish() async throws {
        let fixture = try Fixture()
        let result = LockedBox<[String: Any]?>(nil)
        let port = fixture.port
        let thread = Thread {
            result.set(
                try? Self.runClient([
                    "streams", "--port", String(port), "--count", "1", "--end",
                    "--path", "/hold", "--seconds", "10",
                ]))
        }
        thread.start()
        try #require(fixture.waitForHeld(1))
        fixture.server.stopAccepting()
        fixture.server.drainConnections()
        try await Task.sleep(for: .milliseconds(200))
        #expect(fixture.server.connectionCount == 1, "the connection stays while its stream is open")
        fixture.releaseHeld()
        let closed = await fixture.server.waitForConnections(until: .now + .seconds(5))
        #expect(closed, "the connection closes once its stream is answered")
        let deadline = Date().addingTimeInterval(15)
        while result.get() == nil && Date() < deadline { usleep(10_000) }
        let output = try #require(result.get())
        let goaway = try #require(output["goaway"] as? [String: Any], "\(output)")
        #expect(goaway["error_code"] as? Int == 0, "GOAWAY with NO_ERROR")
        #expect(goaway["last_stream_id"] as? Int == 1, "stream 1 was accepted before the GOAWAY")
        #expect((output["statuses"] as? [String: Int])?["1"] == 204, "the open stream was answered after the GOAWAY: \(output)")
        let frames = output["frames"] as? [String] ?? []
        #expect((frames.firstIndex(of: "GoAwayFrame") ?? .max) < (frames.lastIndex(of: "HeadersFrame") ?? -1))
        #expect(output["closed"] as? Bool == true)
    }
}

import PersistorHTTP
import Testing

// MARK: - Helpers

/// A comparable view of a parsed request.
private struct Snapshot: Equatable, CustomStringConvertible {
    var method: String
    var target: String
    var versionMinor: Int
    var headers: [String]
    var body: [UInt8]

    init(_ head: HTTPRequestHead, body: [UInt8] = []) {
        method = head.method
        target = head.target
        versionMinor = head.versionMinor
        headers = head.headers.fields.map { "\($0.name): \($0.value)" }
        self.body = body
    }

    init(_ request: HTTPRequest) {
        self.init(request.head, body: request.body)
    }

    var description: String {
        "\(method) \(target) HTTP/1.\(versionMinor) \(headers) body=\(body.count)B"
    }
}

/// Everything a parse produced: heads and requests in order, and the error that ended it, if any.
private struct Outcome: Equatable {
    var heads: [Snapshot] = []
    var requests: [Snapshot] = []
    var error: HTTPParseError?
    var orderViolations = 0
}

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Feeds `chunks` one after the other, draining all events after each, and checks that every
/// request yields `.head` and then `.request`.
private func run(_ chunks: [[UInt8]], limits: HTTPParserLimits = HTTPParserLimits()) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    var expectingHead = true
    for chunk in chunks {
        parser.feed(chunk)
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let head):
                    if !expectingHead { outcome.orderViolations += 1 }
                    expectingHead = false
                    outcome.heads.append(Snapshot(head))
                case .request(let request):
                    if expectingHead { outcome.orderViolations += 1 }
                    expectingHead = true
                    outcome.requests.append(Snapshot(request))
                }
            }
        } catch {
            outcome.error = error
            return outcome
        }
    }
    return outcome
}

private func run(_ message: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> Outcome {
    run([message], limits: limits)
}

private func run(_ message: String, limits: HTTPParserLimits = HTTPParserLimits()) -> Outcome {
    run([bytes(message)], limits: limits)
}

/// Parses one complete request and returns it.
private func parseOne(_ message: String) -> HTTPRequest? {
    var parser = HTTPRequestParser()
    parser.feed(bytes(message))
    var result: HTTPRequest?
    do {
        guard case .head = try parser.next() else { return nil }
        guard case .request(let request) = try parser.next() else { return nil }
        result = request
        guard try parser.next() == nil else { return nil }
    } catch {
        return nil
    }
    return result
}

/// Reproducible random numbers (SplitMix64).
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Test data

private let splitCorpus: [String] = [
    "POST /cl HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nX: y\r\n\r\nhello, world!",
    "POST /ch HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n",
    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "\r\nPUT /3 HTTP/1.0\r\nContent-Length: 4\r\n\r\nbodyGET /4 HTTP/1.1\r\nHost: c\r\n\r\n",
]

/// A request the parser must reject with `status`.
struct HTTPParserRejectionCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: [UInt8]
    var status: Int
    var maxHeaderBytes = 64 * 1024
    var maxBodyBytes = 32 * 1024 * 1024

    init(_ name: String, _ raw: String, _ status: Int) {
        self.name = name
        self.raw = Array(raw.utf8)
        self.status = status
    }

    init(_ name: String, bytes raw: [UInt8], _ status: Int) {
        self.name = name
        self.raw = raw
        self.status = status
    }

    var testDescription: String { name }
}

private func post(_ fields: String, body: String = "") -> String {
    "POST / HTTP/1.1\r\nHost: a\r\n\(fields)\r\n\(body)"
}

private let badRequests: [HTTPParserRejectionCase] = [
    // Content-Length / Transfer-Encoding framing
    HTTPParserRejectionCase("CL and TE", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", body: "0\r\n\r\n"), 400),
    HTTPParserRejectionCase("TE and CL", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", body: "0\r\n\r\n"), 400),
    HTTPParserRejectionCase("duplicate CL equal", post("Content-Length: 5\r\nContent-Length: 5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("duplicate CL different", post("Content-Length: 5\r\ncontent-length: 6\r\n", body: "hello!"), 400),
    HTTPParserRejectionCase("CL plus sign", post("Content-Length: +5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL minus sign", post("Content-Length: -5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL inner space", post("Content-Length: 1 5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL comma list", post("Content-Length: 5, 5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL comma no space", post("Content-Length: 5,5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL 20 digits", post("Content-Length: 00000000000000000005\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL hex", post("Content-Length: 0x5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("CL empty", post("Content-Length:\r\n"), 400),
    HTTPParserRejectionCase("TE gzip", post("Transfer-Encoding: gzip\r\n"), 501),
    HTTPParserRejectionCase("TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n"), 501),
    // chunked not final, or applied twice: the length is undeterminable, 400 (RFC 9112 §6.1, §6.3).
    HTTPParserRejectionCase("TE chunked, gzip", post("Transfer-Encoding: chunked, gzip\r\n"), 400),
    HTTPParserRejectionCase("TE chunked, identity", post("Transfer-Encoding: chunked, identity\r\n"), 400),
    HTTPParserRejectionCase("TE chunked, chunked", post("Transfer-Encoding: chunked, chunked\r\n"), 400),
    HTTPParserRejectionCase(
        "TE chunked twice as fields",
        post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400),
    HTTPParserRejectionCase(
        "TE chunked then identity as fields",
        post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"), 400),
    HTTPParserRejectionCase("TE identity", post("Transfer-Encoding: identity\r\n"), 501),
    HTTPParserRejectionCase("TE chunked with parameter", post("Transfer-Encoding: chunked;q=1\r\n"), 501),
    HTTPParserRejectionCase("TE empty", post("Transfer-Encoding:\r\n"), 400),
    HTTPParserRejectionCase("TE only commas", post("Transfer-Encoding: , ,\r\n"), 400),
    HTTPParserRejectionCase("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),

    // Field syntax
    HTTPParserRejectionCase("obs-fold", post("X-A: one\r\n two\r\n"), 400),
    HTTPParserRejectionCase("obs-fold with tab", post("X-A: one\r\n\ttwo\r\n"), 400),
    HTTPParserRejectionCase("first field line starts with space", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    HTTPParserRejectionCase("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    HTTPParserRejectionCase("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400),
    HTTPParserRejectionCase("space before colon in CL", post("Content-Length : 5\r\n", body: "hello"), 400),
    HTTPParserRejectionCase("empty field name", post(": value\r\n"), 400),
    HTTPParserRejectionCase("no colon", post("JustAName\r\n"), 400),
    HTTPParserRejectionCase("invalid name char", post("X(A): b\r\n"), 400),
    HTTPParserRejectionCase("NUL in value", post("X-A: a\u{0}b\r\n"), 400),
    HTTPParserRejectionCase("control char in value", post("X-A: a\u{1}b\r\n"), 400),
    HTTPParserRejectionCase("DEL in value", post("X-A: a\u{7F}b\r\n"), 400),
    HTTPParserRejectionCase("vertical tab in TE", post("Transfer-Encoding: chunked\u{0B}\r\n"), 400),

    // Line endings
    HTTPParserRejectionCase("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    HTTPParserRejectionCase("bare LF only", "GET / HTTP/1.1\nHost: a\n\n", 400),
    HTTPParserRejectionCase("bare LF leading line", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("bare CR in field line", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    HTTPParserRejectionCase("bare CR ending a line", "GET / HTTP/1.1\r\rHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 400),

    // Host
    HTTPParserRejectionCase("missing Host in HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
    HTTPParserRejectionCase("two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    HTTPParserRejectionCase("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
    HTTPParserRejectionCase("Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    HTTPParserRejectionCase("Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    HTTPParserRejectionCase("Host port not digits", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400),
    HTTPParserRejectionCase("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400),
    HTTPParserRejectionCase("Host IP-literal unclosed", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400),
    HTTPParserRejectionCase("two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400),

    // Request line
    HTTPParserRejectionCase("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    HTTPParserRejectionCase("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    HTTPParserRejectionCase("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505),
    HTTPParserRejectionCase("HTTP/0.9 version", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    HTTPParserRejectionCase("garbage version", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("version with two digit minor", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("version without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("no version", "GET /\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("trailing space after version", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("two spaces before target", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("two spaces before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("tab separator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("NUL in target", "GET /a\u{0}b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("obs-text in target", bytes: bytes("GET /a") + [0xE9] + bytes(" HTTP/1.1\r\nHost: a\r\n\r\n"), 400),
    HTTPParserRejectionCase("relative target", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("ftp target", "GET ftp://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("authority-form target", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("method too long", String(repeating: "A", count: 33) + " / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("very long method", String(repeating: "A", count: 5000) + " / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("invalid method char", "GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    HTTPParserRejectionCase("request line without spaces", "GET\r\nHost: a\r\n\r\n", 400),

    // Chunked framing
    HTTPParserRejectionCase("chunk size zz", post("Transfer-Encoding: chunked\r\n", body: "zz\r\n"), 400),
    HTTPParserRejectionCase(
        "chunk size 17 hex digits",
        post("Transfer-Encoding: chunked\r\n", body: "00000000000000001\r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("chunk size empty", post("Transfer-Encoding: chunked\r\n", body: "\r\n"), 400),
    HTTPParserRejectionCase("chunk size negative", post("Transfer-Encoding: chunked\r\n", body: "-1\r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("chunk size 0x prefix", post("Transfer-Encoding: chunked\r\n", body: "0x1\r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("chunk size trailing space", post("Transfer-Encoding: chunked\r\n", body: "1 \r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("chunk size leading space", post("Transfer-Encoding: chunked\r\n", body: " 1\r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("chunk size bare LF", post("Transfer-Encoding: chunked\r\n", body: "1\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase(
        "chunk extension with control char",
        post("Transfer-Encoding: chunked\r\n", body: "1;a\u{1}\r\nx\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase(
        "chunk size line too long",
        post("Transfer-Encoding: chunked\r\n", body: "1;" + String(repeating: "a", count: 5000) + "\r\nx"),
        400),
    HTTPParserRejectionCase(
        "missing CRLF after chunk data",
        post("Transfer-Encoding: chunked\r\n", body: "5\r\nhelloX\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase("LF only after chunk data", post("Transfer-Encoding: chunked\r\n", body: "5\r\nhello\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase(
        "CR only after chunk data",
        post("Transfer-Encoding: chunked\r\n", body: "5\r\nhello\rX0\r\n\r\n"), 400),
    HTTPParserRejectionCase(
        "chunk data longer than size",
        post("Transfer-Encoding: chunked\r\n", body: "3\r\nhello\r\n0\r\n\r\n"), 400),
    HTTPParserRejectionCase(
        "obs-fold in trailers",
        post("Transfer-Encoding: chunked\r\n", body: "0\r\nT: a\r\n b\r\n\r\n"), 400),
    HTTPParserRejectionCase("NUL in trailer", post("Transfer-Encoding: chunked\r\n", body: "0\r\nT: a\u{0}\r\n\r\n"), 400),
    HTTPParserRejectionCase("bare LF ending trailers", post("Transfer-Encoding: chunked\r\n", body: "0\r\nT: a\r\n\n"), 400),
    HTTPParserRejectionCase("huge chunk size", post("Transfer-Encoding: chunked\r\n", body: "ffffffffffffffff\r\n"), 413),

    // Sizes
    HTTPParserRejectionCase(
        "huge header line", "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "a", count: 70000) + "\r\n\r\n",
        431),
    HTTPParserRejectionCase(
        "huge request target", "GET /" + String(repeating: "a", count: 70000) + " HTTP/1.1\r\nHost: a\r\n\r\n",
        414),
    HTTPParserRejectionCase(
        "300 headers",
        "GET / HTTP/1.1\r\nHost: a\r\n" + (0..<300).map { "X-\($0): v\r\n" }.joined() + "\r\n", 431),
    HTTPParserRejectionCase(
        "many leading empty lines", String(repeating: "\r\n", count: 40000) + "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        431),
    HTTPParserRejectionCase("CL over default limit", post("Content-Length: 33554433\r\n"), 413),
    HTTPParserRejectionCase("CL 19 nines", post("Content-Length: 9999999999999999999\r\n"), 413),
]

private let fuzzSeeds: [String] = [
    "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
    "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
]

private let fuzzAlphabet: [UInt8] =
    Array("GETPOSTHEAD /HTTP1.0:\r\n\t ;,=\"chunkedContent-LengthTransfer-EncodingHost0123456789abcdefxyz".utf8)
    + [0x00, 0x7F, 0x80, 0xFF]

/// Parses `input` in one feed and in random pieces; both must terminate and agree.
private func fuzzParse(_ input: [UInt8], limits: HTTPParserLimits, rng: inout SplitMix64) {
    let oneShot = run(input, limits: limits)
    #expect(oneShot.orderViolations == 0)

    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    var offset = 0
    var steps = 0
    feeding: while offset < input.count {
        let size = Int.random(in: 1...64, using: &rng)
        let end = min(input.count, offset + size)
        parser.feed(Array(input[offset..<end]))
        offset = end
        do {
            while let event = try parser.next() {
                steps += 1
                if steps > 2 * input.count + 2 {
                    Issue.record("parser does not make progress")
                    break feeding
                }
                switch event {
                case .head(let head): outcome.heads.append(Snapshot(head))
                case .request(let request): outcome.requests.append(Snapshot(request))
                }
            }
        } catch {
            outcome.error = error
            #expect(throws: error) { try parser.next() }
            break
        }
        #expect(parser.bufferedByteCount <= limits.maxHeaderBytes + limits.maxBodyBytes + size)
    }
    #expect(outcome == oneShot)
    if let error = outcome.error {
        #expect([400, 413, 414, 431, 501, 505].contains(error.status))
    }
}

@Suite("HTTPRequestParser")
struct HTTPRequestParserTests {
    // MARK: Valid requests

    @Test func simpleGet() throws {
        let request = try #require(parseOne("GET /index.html?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"))
        #expect(request.head.method == "GET")
        #expect(request.head.target == "/index.html?x=1&y=2")
        #expect(request.head.path == "/index.html")
        #expect(request.head.query == "x=1&y=2")
        #expect(request.head.versionMinor == 1)
        #expect(request.head.headers.fields.map(\.name) == ["Host", "Accept"])
        #expect(request.head.headers["host"] == "example.com")
        #expect(request.head.headers["ACCEPT"] == "*/*")
        #expect(request.body.isEmpty)
        #expect(request.head.keepAlive)
        #expect(!request.head.expectsContinue)
    }

    @Test(
        "Host values a sender may use: names, ports, IP literals, empty",
        arguments: [
            "example.com", "example.com:8080", "127.0.0.1:80", "[::1]", "[::1]:8443", "[v1.fe80::a+en1]",
            "", "xn--bcher-kva.example", "my_host.internal", "a%20b",
        ])
    func validHostValues(_ host: String) throws {
        let request = try #require(parseOne("GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n"))
        #expect(request.head.headers["host"] == host)
    }

    @Test func postWithContentLength() throws {
        let request = try #require(
            parseOne(
                "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"))
        #expect(request.head.method == "POST")
        #expect(request.body == bytes("hello world"))
        #expect(request.head.headers["content-length"] == "11")
    }

    @Test func contentLengthZeroAndLeadingZeros() throws {
        let zero = try #require(parseOne("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"))
        #expect(zero.body.isEmpty)
        let padded = try #require(parseOne("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0000000000000000003\r\n\r\nabc"))
        #expect(padded.body == bytes("abc"))
    }

    @Test func chunkedWithExtensionsAndTrailers() throws {
        let message =
            "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n"
            + "6 ; quoted=\"a b;c\" ;flag\r\n world\r\n"
            + "A\r\n0123456789\r\n"
            + "0;last\r\nX-Checksum: abc\r\nX-Other:  z \r\n\r\n"
        let request = try #require(parseOne(message))
        #expect(request.body == bytes("hello world0123456789"))
        // Trailers are discarded.
        #expect(request.head.headers.fields.map(\.name) == ["Host", "Transfer-Encoding"])
    }

    @Test func chunkedCodingIsCaseInsensitiveAndSixteenHexDigitsAreAllowed() throws {
        let request = try #require(
            parseOne(
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0000000000000003\r\nabc\r\n0\r\n\r\n"))
        #expect(request.body == bytes("abc"))
    }

    @Test func http10WithoutHost() throws {
        let request = try #require(parseOne("GET /old HTTP/1.0\r\n\r\n"))
        #expect(request.head.versionMinor == 0)
        #expect(request.head.headers.fields.isEmpty)
        #expect(!request.head.keepAlive)
        let keepAlive = try #require(parseOne("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"))
        #expect(keepAlive.head.keepAlive)
    }

    @Test func keepAliveAndExpectContinue() throws {
        let close = try #require(parseOne("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"))
        #expect(!close.head.keepAlive)

        var parser = HTTPRequestParser()
        parser.feed(bytes("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"))
        guard case .head(let head) = try parser.next() else {
            Issue.record("expected .head")
            return
        }
        #expect(head.expectsContinue)
        #expect(head.keepAlive)
        #expect(try parser.next() == nil)
        #expect(!parser.isIdle)
        parser.feed(bytes("abc"))
        guard case .request(let request) = try parser.next() else {
            Issue.record("expected .request")
            return
        }
        #expect(request.body == bytes("abc"))
        #expect(request.head.expectsContinue)
        #expect(parser.isIdle)
    }

    @Test func headRequest() throws {
        let request = try #require(parseOne("HEAD /status HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(request.head.method == "HEAD")
        #expect(request.head.target == "/status")
    }

    @Test func optionsAsteriskAndAbsoluteForm() throws {
        let options = try #require(parseOne("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(options.head.target == "*")
        let absolute = try #require(parseOne("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(absolute.head.target == "http://example.com/a?b")
        #expect(absolute.head.path == "/a")
        #expect(absolute.head.query == "b")
        let noPath = try #require(parseOne("GET http://example.com?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(noPath.head.path == "/")
        #expect(noPath.head.query == "q=1")
        let plain = try #require(parseOne("GET /p%3F/x HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(plain.head.path == "/p%3F/x")
        #expect(plain.head.query == nil)
        #expect(run("GET * HTTP/1.1\r\nHost: a\r\n\r\n").error?.status == 400)
        #expect(run("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n").error?.status == 400)
    }

    @Test func caseInsensitivePrefix() {
        #expect("X-Goog-PubSub-Message-Id".hasCaseInsensitivePrefix("x-goog-pubsub-"))
        #expect("x-goog-pubsub-".hasCaseInsensitivePrefix("x-goog-pubsub-"))
        #expect(!"x-goog-pubsub".hasCaseInsensitivePrefix("x-goog-pubsub-"))
        #expect(!"x_goog-pubsub-id".hasCaseInsensitivePrefix("x-goog-pubsub-"))
        #expect(!"Content-Type".hasCaseInsensitivePrefix("x-goog-pubsub-"))
        #expect("anything".hasCaseInsensitivePrefix(""))
        // Only letters fold: '@' and '`' (or '[' and '{') differ by the case bit alone.
        #expect(!"@a".hasCaseInsensitivePrefix("`a"))
        #expect(!"[x]".caseInsensitiveEquals("{x]"))
        #expect("Content-LENGTH".caseInsensitiveEquals("content-length"))
        #expect(!"content-length".caseInsensitiveEquals("content-lengths"))
        #expect("a, Keep-Alive".split(separator: " ")[1].caseInsensitiveEquals("keep-alive"))
        #expect("Éa".caseInsensitiveEquals("Éa") && !"Éa".caseInsensitiveEquals("éa"))
    }

    @Test func leadingEmptyLinesAreSkipped() throws {
        let request = try #require(parseOne("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(request.head.method == "GET")
    }

    @Test func fieldValuesAreTrimmedAndDecodedAsUTF8OrElseLatin1() throws {
        var message = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Spaces: \t inner  value \t\r\nX-Empty:\r\nX-Latin: caf")
        message += [0xE9, 0xFF, 0x80]
        message += bytes("\r\nX-Tab:a\tb\r\nX-UTF8: café ☕\r\n\r\n")
        let outcome = run(message)
        #expect(outcome.error == nil)
        let headers = try #require(outcome.requests.first).headers
        #expect(
            headers == [
                "Host: a", "X-Spaces: inner  value", "X-Empty: ", "X-Latin: caf\u{E9}\u{FF}\u{80}", "X-Tab: a\tb",
                "X-UTF8: café ☕",
            ])
    }

    @Test func feedFromRawBuffer() throws {
        var parser = HTTPRequestParser()
        bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n").withUnsafeBytes { parser.feed($0) }
        guard case .head = try parser.next(), case .request(let request) = try parser.next() else {
            Issue.record("expected a request")
            return
        }
        #expect(request.head.target == "/")
        #expect(parser.isIdle)
        #expect(parser.bufferedByteCount == 0)
    }

    @Test func idleAndBufferedByteCount() throws {
        var parser = HTTPRequestParser()
        #expect(parser.isIdle)
        parser.feed(bytes("GET / HT"))
        #expect(try parser.next() == nil)
        #expect(!parser.isIdle)
        #expect(parser.bufferedByteCount == 8)
        parser.feed(bytes("TP/1.1\r\nHost: a\r\n\r\nGET /2"))
        guard case .head = try parser.next(), case .request = try parser.next() else {
            Issue.record("expected a request")
            return
        }
        #expect(try parser.next() == nil)
        #expect(!parser.isIdle)
        #expect(parser.bufferedByteCount == 6)
        parser.feed(bytes(" HTTP/1.1\r\nHost: a\r\n\r\n"))
        guard case .head = try parser.next(), case .request(let second) = try parser.next() else {
            Issue.record("expected a request")
            return
        }
        #expect(second.head.target == "/2")
        #expect(try parser.next() == nil)
        #expect(parser.isIdle)
        #expect(parser.bufferedByteCount == 0)
    }

    // MARK: Pipelining

    @Test func twoPipelinedRequests() {
        let outcome = run("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
        #expect(outcome.error == nil)
        #expect(outcome.orderViolations == 0)
        #expect(outcome.requests.map(\.target) == ["/1", "/2"])
        #expect(outcome.requests.map(\.body) == [[], bytes("hi")])
    }

    @Test func threePipelinedRequestsWithChunked() {
        let outcome = run(
            "POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                + "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                + "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n2\r\nyz\r\n0\r\nT: 1\r\n\r\n")
        #expect(outcome.error == nil)
        #expect(outcome.orderViolations == 0)
        #expect(outcome.heads.map(\.target) == ["/1", "/2", "/3"])
        #expect(outcome.requests.map(\.target) == ["/1", "/2", "/3"])
        #expect(outcome.requests.map(\.body) == [bytes("abc"), [], bytes("xyz")])
    }

    @Test func pipelinedRequestsDrainToIdle() throws {
        var parser = HTTPRequestParser()
        let one = bytes("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        var completed = 0
        var stream: [UInt8] = []
        for _ in 0..<1000 { stream += one }
        var offset = 0
        var size = 1
        while offset < stream.count {
            let end = min(stream.count, offset + size)
            parser.feed(Array(stream[offset..<end]))
            offset = end
            size = size % 173 + 17
            while let event = try parser.next() {
                if case .request(let request) = event {
                    #expect(request.body == bytes("hello"))
                    completed += 1
                }
            }
            #expect(parser.bufferedByteCount <= one.count + 200)
        }
        #expect(completed == 1000)
        #expect(parser.isIdle)
        #expect(parser.bufferedByteCount == 0)
    }

    // MARK: Split at every byte boundary

    @Test(arguments: splitCorpus)
    func splitAtEveryBoundary(message: String) {
        let all = bytes(message)
        let expected = run(all)
        #expect(expected.error == nil)
        #expect(expected.orderViolations == 0)
        #expect(!expected.requests.isEmpty)
        for index in 0...all.count {
            let outcome = run([Array(all[..<index]), Array(all[index...])])
            #expect(outcome == expected, "split at \(index)")
        }
        let byteByByte = run(all.map { [$0] })
        #expect(byteByByte == expected)
    }

    @Test(arguments: splitCorpus)
    func splitAtEveryPairOfBoundaries(message: String) {
        let all = bytes(message)
        let expected = run(all)
        for first in stride(from: 0, through: all.count, by: 3) {
            for second in first...all.count {
                let outcome = run([Array(all[..<first]), Array(all[first..<second]), Array(all[second...])])
                #expect(outcome == expected, "split at \(first), \(second)")
            }
        }
    }

    // MARK: Adversarial input

    @Test(arguments: badRequests)
    func rejectsAdversarialInput(_ bad: HTTPParserRejectionCase) {
        let limits = HTTPParserLimits(maxHeaderBytes: bad.maxHeaderBytes, maxBodyBytes: bad.maxBodyBytes)
        let oneShot = run(bad.raw, limits: limits)
        #expect(oneShot.error?.status == bad.status, "\(oneShot.error?.reason ?? "no error")")
        #expect(oneShot.requests.isEmpty)
        // Reasons are fixed texts: they never echo the request.
        #expect(oneShot.error.map { !$0.reason.contains("\u{0}") && $0.reason.utf8.count < 80 } ?? false)
        // Feeding byte by byte (or in two halves) gives the same answer.
        if bad.raw.count < 2000 {
            #expect(run(bad.raw.map { [$0] }, limits: limits) == oneShot)
        }
        let half = bad.raw.count / 2
        #expect(run([Array(bad.raw[..<half]), Array(bad.raw[half...])], limits: limits) == oneShot)
    }

    @Test func contentLengthOverLimitIsRejectedBeforeTheBody() {
        let limits = HTTPParserLimits(maxBodyBytes: 10)
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"))
        #expect(throws: HTTPParseError(status: 413, reason: "request body too large")) { try parser.next() }
        // Exactly at the limit is fine.
        let atLimit = run("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits)
        #expect(atLimit.error == nil)
        #expect(atLimit.requests.first?.body == bytes("0123456789"))
    }

    @Test func largeContentLengthWithinLimitIsAnnouncedWithoutTheBody() throws {
        var parser = HTTPRequestParser()
        parser.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 33554432\r\n\r\nabc"))
        guard case .head(let head) = try parser.next() else {
            Issue.record("expected .head")
            return
        }
        #expect(head.headers["Content-Length"] == "33554432")
        #expect(try parser.next() == nil)
        #expect(parser.bufferedByteCount == 0)
        #expect(!parser.isIdle)
    }

    @Test func chunkedTotalOverLimitIsRejectedBeforeTheData() throws {
        var parser = HTTPRequestParser(limits: HTTPParserLimits(maxBodyBytes: 10))
        parser.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
        guard case .head = try parser.next() else {
            Issue.record("expected .head")
            return
        }
        #expect(try parser.next() == nil)
        parser.feed(bytes("5\r\n"))  // total 10: still fine
        #expect(try parser.next() == nil)
        parser.feed(bytes("world\r\n1\r\n"))  // total 11: over, before the data byte arrives
        #expect(throws: HTTPParseError(status: 413, reason: "request body too large")) { try parser.next() }
    }

    @Test func trailersCountAgainstTheHeaderLimit() {
        let limits = HTTPParserLimits(maxHeaderBytes: 200)
        let head = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let small = run(head + "1\r\nx\r\n0\r\nT: " + String(repeating: "t", count: 50) + "\r\n\r\n", limits: limits)
        #expect(small.error == nil)
        #expect(small.requests.count == 1)
        let big = run(head + "1\r\nx\r\n0\r\nT: " + String(repeating: "t", count: 200) + "\r\n\r\n", limits: limits)
        #expect(big.error?.status == 431)
        #expect(big.heads.count == 1)
        let many = run(head + "0\r\n" + String(repeating: "T: 1\r\n", count: 40) + "\r\n", limits: limits)
        #expect(many.error?.status == 431)
    }

    @Test func headerLimitIsExactAndNeverOverBuffered() throws {
        let limit = 1024
        let limits = HTTPParserLimits(maxHeaderBytes: limit)
        let prefix = "GET / HTTP/1.1\r\nHost: a\r\nX: "
        let suffix = "\r\n\r\n"
        let exact = prefix + String(repeating: "v", count: limit - prefix.utf8.count - suffix.utf8.count) + suffix
        #expect(exact.utf8.count == limit)
        #expect(run(exact, limits: limits).requests.count == 1)
        #expect(run(bytes(exact).map { [$0] }, limits: limits).requests.count == 1)
        let over = prefix + String(repeating: "v", count: limit + 1 - prefix.utf8.count - suffix.utf8.count) + suffix
        #expect(run(over, limits: limits).error?.status == 431)
        #expect(run(bytes(over).map { [$0] }, limits: limits).error?.status == 431)

        // An unterminated head is refused as soon as it passes the limit.
        var parser = HTTPRequestParser(limits: limits)
        parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\nX: "))
        #expect(try parser.next() == nil)
        var fed = 28
        var failure: HTTPParseError?
        while failure == nil, fed <= limit + 1 {
            parser.feed([0x61])
            fed += 1
            do {
                _ = try parser.next()
                #expect(parser.bufferedByteCount <= limit)
            } catch {
                failure = error
            }
        }
        #expect(failure?.status == 431)
        #expect(fed == limit + 1)
    }

    @Test func poisonedAfterError() {
        var parser = HTTPRequestParser()
        parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
        var first: HTTPParseError?
        do { _ = try parser.next() } catch { first = error }
        #expect(first?.status == 400)
        parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        for _ in 0..<3 {
            do {
                _ = try parser.next()
                Issue.record("poisoned parser returned an event")
            } catch {
                #expect(error == first)
            }
        }
        #expect(parser.bufferedByteCount == 0)
        #expect(!parser.isIdle)
    }

    @Test func poisonedAfterBodyError() throws {
        var parser = HTTPRequestParser()
        parser.feed(bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
        guard case .head = try parser.next() else {
            Issue.record("expected .head")
            return
        }
        let expected = HTTPParseError(status: 400, reason: "invalid chunk size")
        #expect(throws: expected) { try parser.next() }
        #expect(throws: expected) { try parser.next() }
    }

    // MARK: Robustness

    @Test func fuzzRandomBytes() {
        var rng = SplitMix64(seed: 0x5EED_1234)
        let limits = HTTPParserLimits(maxHeaderBytes: 512, maxBodyBytes: 256)
        for iteration in 0..<2000 {
            let length = Int.random(in: 0...600, using: &rng)
            var input: [UInt8] = []
            input.reserveCapacity(length)
            let fromAlphabet = iteration % 2 == 0
            for _ in 0..<length {
                if fromAlphabet {
                    input.append(fuzzAlphabet[Int.random(in: 0..<fuzzAlphabet.count, using: &rng)])
                } else {
                    input.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            // Give some inputs a plausible start so the parser gets past the request line.
            if iteration % 3 == 0 { input = bytes("POST / HTTP/1.1\r\nHost: a\r\n") + input }
            fuzzParse(input, limits: limits, rng: &rng)
        }
    }

    @Test func fuzzMutatedRequests() {
        var rng = SplitMix64(seed: 42)
        let limits = HTTPParserLimits(maxHeaderBytes: 512, maxBodyBytes: 256)
        var accepted = 0
        for iteration in 0..<2000 {
            var input = bytes(fuzzSeeds[iteration % fuzzSeeds.count])
            if iteration % 4 == 0 { input += bytes(fuzzSeeds[(iteration / 4) % fuzzSeeds.count]) }
            let mutations = Int.random(in: 1...4, using: &rng)
            for _ in 0..<mutations {
                let position = Int.random(in: 0..<max(1, input.count), using: &rng)
                switch Int.random(in: 0..<6, using: &rng) {
                case 0 where !input.isEmpty:  // replace a byte
                    input[position] = UInt8.random(in: 0...255, using: &rng)
                case 1:  // insert a byte from the alphabet
                    input.insert(fuzzAlphabet[Int.random(in: 0..<fuzzAlphabet.count, using: &rng)], at: position)
                case 2 where !input.isEmpty:  // delete a byte
                    input.remove(at: position)
                case 3 where !input.isEmpty:  // duplicate a range
                    let end = min(input.count, position + Int.random(in: 1...40, using: &rng))
                    input.insert(contentsOf: input[position..<end], at: position)
                case 4:  // truncate
                    input.removeSubrange(position...)
                default:  // flip case of a byte
                    if !input.isEmpty { input[position] ^= 0x20 }
                }
            }
            let outcome = run(input, limits: limits)
            if outcome.error == nil && !outcome.requests.isEmpty { accepted += 1 }
            fuzzParse(input, limits: limits, rng: &rng)
        }
        // The mutations leave some requests valid (e.g. a changed header value).
        #expect(accepted > 0)
    }

    @Test func oneByteAtATimeWithManyHeadersIsLinear() throws {
        var message = "POST /many HTTP/1.1\r\nHost: a\r\n"
        for index in 0..<200 {
            message += "X-Header-Number-\(index): some value that is not very short, number \(index)\r\n"
        }
        message += "Content-Length: 5\r\n\r\nhello"
        let all = bytes(message)
        var parser = HTTPRequestParser()
        var request: HTTPRequest?
        for byte in all {
            parser.feed([byte])
            while let event = try parser.next() {
                if case .request(let complete) = event { request = complete }
            }
        }
        let complete = try #require(request)
        #expect(complete.head.headers.fields.count == 202)
        #expect(complete.head.headers["x-header-number-199"] == "some value that is not very short, number 199")
        #expect(complete.body == bytes("hello"))
        #expect(parser.isIdle)
    }

    @Test func oneByteAtATimeLongChunkExtensionsAndBody() throws {
        // A long chunk line and a long body, fed byte by byte, still finish (no rescans).
        var message = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        message += "400;" + String(repeating: "e", count: 4000) + "\r\n" + String(repeating: "d", count: 1024) + "\r\n0\r\n\r\n"
        var parser = HTTPRequestParser()
        var request: HTTPRequest?
        for byte in bytes(message) {
            parser.feed([byte])
            while let event = try parser.next() {
                if case .request(let complete) = event { request = complete }
            }
        }
        #expect(try #require(request).body.count == 1024)
    }
}

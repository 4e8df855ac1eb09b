// libFuzzer target for the incremental HTTP/1.1 request parser (PersistorHTTP).
//
// Built with `-DFUZZING -sanitize=fuzzer` (scripts/fuzz) it exports `LLVMFuzzerTestOneInput`;
// otherwise it is a corpus replayer: `FuzzHTTPParser FILE|DIR...` runs every file through the same
// checks (CI runs the committed seeds this way without sanitizers).
//
// Each input is a raw byte stream as a client would send it (one or more pipelined requests). It is
// parsed several ways, and the results must agree:
//   A. whole, with the default limits (the reference),
//   B. split at input-derived points (the incremental path), default limits: identical to A,
//   C. one byte at a time (inputs up to 256 bytes): identical to A,
//   D. whole, with small input-derived limits, so the 413/431 paths are hit: identical to A when it
//      succeeds, otherwise A's requests up to the failure and a limit error (or A's own error),
//   E. split like B with D's limits: identical to D.
// Invariants checked on every run: events come as .head then .request with the same head; a body
// with Content-Length has exactly that length; bodies stay within maxBodyBytes; never more bytes
// consumed than fed, and never more buffered than one head (or chunk line) may take; heads are
// well formed; after an error the parser stays poisoned with the same error and holds no bytes.
// Finally every request of A that is plain ASCII is serialised again (Content-Length framing) and
// must parse back to the same request.

import PersistorHTTP

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        fuzzHTTPParser(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
#else
    import FuzzReplay

    @main
    struct ReplayCorpus {
        static func main() { replayCorpus("FuzzHTTPParser", fuzzHTTPParser) }
    }
#endif

// MARK: - The target

/// The parser's fixed bound on a chunk-size line, CRLF included (HTTPRequestParser.maxChunkLineBytes + 2).
private let chunkLineBound = 4096 + 2
private let defaultLimits = HTTPParserLimits()

func fuzzHTTPParser(_ input: UnsafeRawBufferPointer) {
    let bytes = Array(input)
    var rng = SplitMix64(seed: fnv1a(bytes))

    let whole = drive(bytes, cuts: [], limits: defaultLimits)
    let cuts = randomCuts(count: bytes.count, rng: &rng)
    check(drive(bytes, cuts: cuts, limits: defaultLimits) == whole, "split at \(cuts) differs from whole input")
    if bytes.count <= 256 {
        let everyByte = bytes.count > 1 ? Array(1..<bytes.count) : []
        check(drive(bytes, cuts: everyByte, limits: defaultLimits) == whole, "byte-by-byte differs from whole input")
    }

    let small = HTTPParserLimits(maxHeaderBytes: Int(rng.next() % 320), maxBodyBytes: Int(rng.next() % 80))
    let limited = drive(bytes, cuts: [], limits: small)
    checkLimited(limited, against: whole, limits: small)
    let limitedCuts = randomCuts(count: bytes.count, rng: &rng)
    check(
        drive(bytes, cuts: limitedCuts, limits: small) == limited,
        "split at \(limitedCuts) differs from whole input (small limits)")

    for request in whole.requests { checkRoundTrip(request) }
}

// MARK: - Driving the parser

/// A comparable view of a head or request.
struct Snapshot: Equatable {
    var method: String
    var target: String
    var versionMinor: Int
    var headers: [String]
    var body: [UInt8]?

    init(_ head: HTTPRequestHead, body: [UInt8]? = nil) {
        method = head.method
        target = head.target
        versionMinor = head.versionMinor
        headers = head.headers.fields.flatMap { [$0.name, $0.value] }
        self.body = body
    }
}

struct Outcome: Equatable {
    var heads: [Snapshot] = []
    var requests: [Snapshot] = []
    var error: HTTPParseError?
    /// Whether the parser reported idle at the end (no error).
    var idle = false
}

/// Feeds `bytes` cut at `cuts` (sorted offsets), draining every event after each piece, and checks
/// the per-event invariants.
func drive(_ bytes: [UInt8], cuts: [Int], limits: HTTPParserLimits) -> Outcome {
    var parser = HTTPRequestParser(limits: limits)
    var outcome = Outcome()
    var fed = 0
    var consumed = 0
    var openHead: Snapshot?
    let bufferBound = max(limits.maxHeaderBytes, chunkLineBound)
    var start = 0
    for end in cuts + [bytes.count] where end >= start {
        parser.feed(Array(bytes[start..<end]))
        fed += end - start
        start = end
        do {
            while let event = try parser.next() {
                switch event {
                case .head(let head):
                    check(openHead == nil, ".head while a request is open")
                    checkHead(head)
                    openHead = Snapshot(head)
                    outcome.heads.append(Snapshot(head))
                case .request(let request):
                    check(openHead == Snapshot(request.head), ".request without its .head")
                    openHead = nil
                    checkBody(request, limits: limits)
                    outcome.requests.append(Snapshot(request.head, body: request.body))
                }
                checkConsumption(parser, fed: fed, consumed: &consumed)
            }
        } catch {
            checkPoisoned(&parser, error: error)
            outcome.error = error
            return outcome
        }
        checkConsumption(parser, fed: fed, consumed: &consumed)
        // Waiting for more input: at most one head (or chunk line) can be buffered.
        check(
            parser.bufferedByteCount <= bufferBound,
            "buffered \(parser.bufferedByteCount) bytes while waiting (bound \(bufferBound))")
    }
    outcome.idle = parser.isIdle
    if outcome.idle {
        check(parser.bufferedByteCount == 0 && openHead == nil, "idle parser holds bytes or a request")
    }
    return outcome
}

func checkConsumption(_ parser: HTTPRequestParser, fed: Int, consumed: inout Int) {
    let buffered = parser.bufferedByteCount
    check(buffered >= 0 && buffered <= fed, "buffered \(buffered) of \(fed) fed bytes")
    check(fed - buffered >= consumed, "consumed bytes went backwards")
    consumed = fed - buffered
}

/// After an error: the same error forever, no bytes kept, never idle, input ignored.
func checkPoisoned(_ parser: inout HTTPRequestParser, error: HTTPParseError) {
    check([400, 413, 414, 431, 501, 505].contains(error.status), "unexpected status \(error.status)")
    check(
        !error.reason.isEmpty && error.reason.utf8.count < 80 && error.reason.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F },
        "reason is not a short fixed text")
    check(parser.bufferedByteCount == 0 && !parser.isIdle, "poisoned parser keeps bytes or is idle")
    parser.feed(Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
    for _ in 0..<2 {
        do {
            _ = try parser.next()
            fail("poisoned parser returned an event")
        } catch let again {
            check(again == error, "poisoned parser changed its error")
        }
    }
    check(parser.bufferedByteCount == 0 && !parser.isIdle, "poisoned parser accepted bytes")
}

func checkHead(_ head: HTTPRequestHead) {
    check(
        !head.method.isEmpty && head.method.utf8.count <= 32 && head.method.utf8.allSatisfy(isTokenByte),
        "bad method")
    check(!head.target.isEmpty && head.target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }, "bad target")
    check(head.versionMinor == 0 || head.versionMinor == 1, "bad version")
    let fields = head.headers.fields
    check(fields.count <= 256, "too many fields")
    for field in fields {
        check(!field.name.isEmpty && field.name.utf8.allSatisfy(isTokenByte), "bad field name")
        check(
            field.value.first != " " && field.value.first != "\t" && field.value.last != " " && field.value.last != "\t",
            "field value not trimmed")
        check(
            !field.value.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F },
            "control character in field value")
    }
    let hosts = head.headers.values(for: "host").count
    check(head.versionMinor == 1 ? hosts == 1 : hosts <= 1, "Host count \(hosts)")
    let lengths = head.headers.values(for: "content-length")
    let codings = head.headers.values(for: "transfer-encoding")
    check(lengths.count <= 1, "several Content-Length")
    check(lengths.isEmpty || codings.isEmpty, "Content-Length with Transfer-Encoding")
    if let length = lengths.first {
        check(
            !length.isEmpty && length.utf8.count <= 19 && length.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 },
            "bad Content-Length value")
    }
    if !codings.isEmpty {
        check(head.versionMinor == 1, "Transfer-Encoding in HTTP/1.0")
        let elements = codings.flatMap { $0.split(separator: ",") }
            .map { $0.trimmingOWS().lowercased() }.filter { !$0.isEmpty }
        check(elements == ["chunked"], "accepted Transfer-Encoding \(codings)")
    }
}

func checkBody(_ request: HTTPRequest, limits: HTTPParserLimits) {
    check(request.body.count <= limits.maxBodyBytes, "body over maxBodyBytes")
    if let length = request.head.headers["content-length"] {
        check(UInt64(length) == UInt64(request.body.count), "body length \(request.body.count) != Content-Length \(length)")
    } else if request.head.headers["transfer-encoding"] == nil {
        check(request.body.isEmpty, "body without framing")
    }
}

/// D (small limits) against A (default limits): the same when D succeeded; otherwise D stopped at a
/// limit (or at A's own error) with a prefix of A's events.
func checkLimited(_ limited: Outcome, against whole: Outcome, limits: HTTPParserLimits) {
    guard let error = limited.error else {
        check(limited == whole, "small limits changed a successful parse")
        return
    }
    check(
        error == whole.error || error.status == 413 || error.status == 414 || error.status == 431,
        "small limits gave \(error) where the default limits gave \(String(describing: whole.error))")
    check(
        limited.heads.count <= whole.heads.count && Array(whole.heads.prefix(limited.heads.count)) == limited.heads,
        "small limits changed the heads")
    check(
        limited.requests.count <= whole.requests.count
            && Array(whole.requests.prefix(limited.requests.count)) == limited.requests,
        "small limits changed the requests")
}

/// Serialises a plain-ASCII request with Content-Length framing and parses it back.
func checkRoundTrip(_ request: Snapshot) {
    guard let body = request.body, request.headers.count / 2 < 256,
        request.headers.allSatisfy({ $0.utf8.allSatisfy { $0 < 0x80 } })
    else { return }
    var text = "\(request.method) \(request.target) HTTP/1.\(request.versionMinor)\r\n"
    var kept: [String] = []
    for index in stride(from: 0, to: request.headers.count, by: 2) {
        let name = request.headers[index], value = request.headers[index + 1]
        let lower = name.lowercased()
        if lower == "content-length" || lower == "transfer-encoding" { continue }
        kept += [name, value]
        text += "\(name): \(value)\r\n"
    }
    text += "Content-Length: \(body.count)\r\n\r\n"
    // Normalised fields ("Name: value") can be longer than sent: allow a larger head.
    let again = drive(Array(text.utf8) + body, cuts: [], limits: HTTPParserLimits(maxHeaderBytes: 1 << 20))
    check(again.error == nil && again.requests.count == 1, "serialised request does not parse back")
    var expected = request
    expected.headers = kept + ["Content-Length", String(body.count)]
    check(again.requests.first == expected, "serialised request parses back differently")
}

// MARK: - Helpers

func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A,
        0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E:
        return true
    default:
        return false
    }
}

extension Substring {
    func trimmingOWS() -> Substring {
        var result = self
        while let first = result.first, first == " " || first == "\t" { result = result.dropFirst() }
        while let last = result.last, last == " " || last == "\t" { result = result.dropLast() }
        return result
    }
}

/// 1 to 8 cut points in 0...count, sorted (duplicates allowed: an empty piece is fed as nothing).
func randomCuts(count: Int, rng: inout SplitMix64) -> [Int] {
    guard count > 1 else { return [] }
    let number = Int(rng.next() % 8) + 1
    return (0..<number).map { _ in Int(rng.next() % UInt64(count + 1)) }.sorted()
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    return hash
}

/// Reproducible random numbers (SplitMix64).
struct SplitMix64 {
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

/// An invariant; a violation aborts (libFuzzer records the input as a crash).
@inline(__always)
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzHTTPParser invariant violated: \(message)")
}

import Foundation
import PersistorTestSupport
import Testing

// Helpers shared by the end-to-end tests: archive reading with object paths and raw lines,
// request builders, and threads for blocking socket clients.

/// One archived record: its object, the raw JSON line, and the parsed object.
struct ArchivedRecord {
    let object: String
    let line: String
    let fields: [String: Any]

    /// The record's id ("" when it has none, which no valid record does).
    var id: String { fields["id"] as? String ?? "" }
    var source: String? { fields["source"] as? String }
    var payload: [UInt8]? { ArchiveReader.payload(fields) }
    var attributes: [String: String]? {
        guard let object = fields["attributes"] as? [String: Any] else { return nil }
        var result: [String: String] = [:]
        for (key, value) in object {
            guard let text = value as? String else { return nil }
            result[key] = text
        }
        return result
    }
    var meta: [String: Any]? { fields["meta"] as? [String: Any] }
}

/// One archive object: its path below the store and its records in line order.
struct ArchivedObject {
    let path: String
    let records: [ArchivedRecord]
}

/// Every `*.ndjson.gz` object below the store, decompressed with the system gzip.
func readArchive(_ store: TemporaryDirectory) throws -> [ArchivedObject] {
    try ArchiveReader(store).objectPaths().map { path in
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: store.path + "/" + path)))
        let text = try systemGunzip(bytes)
        guard text.last == 0x0A else { throw TestFailure("\(path) does not end with a newline") }
        let records = try text.split(separator: 0x0A, omittingEmptySubsequences: false).dropLast().map { line in
            guard let fields = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw TestFailure("a line of \(path) is not a JSON object")
            }
            return ArchivedRecord(object: path, line: String(decoding: line, as: UTF8.self), fields: fields)
        }
        return ArchivedObject(path: path, records: records)
    }
}

func allRecords(_ store: TemporaryDirectory) throws -> [ArchivedRecord] {
    try readArchive(store).flatMap(\.records)
}

/// Counts of each archived record id.
func archivedIDCounts(_ store: TemporaryDirectory) throws -> [String: Int] {
    var counts: [String: Int] = [:]
    for record in try allRecords(store) {
        counts[record.id, default: 0] += 1
    }
    return counts
}

/// Whether `key` is a raw-format object of the record whose key-safe id ends `base`
/// (docs/archive-format.md#raw-format): `{path}/{keySafe(id)}.{32 hex digits}.gz` (payload) or
/// `.json` (sidecar).
func isRawObjectKey(_ key: String, base: String, ext: String) -> Bool {
    guard key.hasPrefix(base + "."), key.hasSuffix("." + ext) else { return false }
    let digest = key.dropFirst(base.count + 1).dropLast(ext.count + 1)
    return digest.count == 32 && digest.allSatisfy { $0.isHexDigit && !$0.isUppercase }
}

/// SHA-256 hex of `bytes` computed by coreutils `sha256sum` (independent of the server's code).
func sha256Hex(_ bytes: [UInt8]) throws -> String {
    let tool = try requireTool("sha256sum", install: "apt-get install -y coreutils")
    let result = try runProcess(tool, ["-b", "-"], input: bytes)
    guard result.status == 0 else { throw TestFailure("sha256sum failed: \(result.stderr)") }
    let text = String(decoding: result.stdout, as: UTF8.self)
    guard let hex = text.split(separator: " ").first, hex.count == 64 else { throw TestFailure("unexpected sha256sum output \(text)") }
    return String(hex)
}

/// Deterministic pseudo-random bytes (xorshift64*), so failures are reproducible.
func pseudoRandomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBufferPointer { buffer in
        var i = 0
        while i < count {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            var word = state &* 0x2545_F491_4F6C_DD1D
            for _ in 0..<8 where i < count {
                buffer[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
    }
    return bytes
}

/// A wrapped Pub/Sub push envelope (https://cloud.google.com/pubsub/docs/push), written by hand so
/// the bytes are exact.
func wrappedEnvelope(
    id: String, data: [UInt8]?, attributes: [String: String]? = nil,
    publishTime: String = "2021-02-26T19:13:55.749Z",
    subscription: String = "projects/myproject/subscriptions/mysubscription"
) -> [UInt8] {
    var message: [String] = []
    if let attributes {
        let members = attributes.sorted { $0.key < $1.key }.map { "\(jsonStringLiteral($0.key)):\(jsonStringLiteral($0.value))" }
        message.append("\"attributes\":{\(members.joined(separator: ","))}")
    }
    if let data { message.append("\"data\":\"\(Data(data).base64EncodedString())\"") }
    message.append("\"messageId\":\(jsonStringLiteral(id))")
    message.append("\"message_id\":\(jsonStringLiteral(id))")
    message.append("\"publishTime\":\(jsonStringLiteral(publishTime))")
    message.append("\"publish_time\":\(jsonStringLiteral(publishTime))")
    return Array("{\"message\":{\(message.joined(separator: ","))},\"subscription\":\(jsonStringLiteral(subscription))}".utf8)
}

/// A POST /pubsub request carrying a wrapped envelope.
func pubsubPost(id: String, payload: [UInt8], extraHeaders: [(String, String)] = []) -> [UInt8] {
    RawHTTPClient.request(
        "POST", "/pubsub", headers: [("Content-Type", "application/json")] + extraHeaders,
        body: wrappedEnvelope(id: id, data: payload, attributes: ["test": "e2e"]))
}

/// `count` dedicated threads running `body(index)`; `join` waits for all of them. Blocking socket
/// I/O stays off the Swift concurrency pool.
final class ThreadGroup: @unchecked Sendable {
    private let group = DispatchGroup()

    init(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        for index in 0..<count {
            group.enter()
            let thread = Thread { [group] in
                body(index)
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    func join(timeout: Double = 50) throws {
        if group.wait(timeout: .now() + timeout) == .timedOut {
            throw TestFailure("client threads did not finish within \(timeout) s")
        }
    }
}

/// Runs `body(index)` on `count` dedicated threads and waits for all of them; fails if they do
/// not finish within `timeout` seconds.
func runOnThreads(_ count: Int, timeout: Double = 50, _ body: @escaping @Sendable (Int) -> Void) throws {
    try ThreadGroup(count, body).join(timeout: timeout)
}

/// Starts `body` on a thread; `join` waits for it.
final class BackgroundThread: @unchecked Sendable {
    private let threads: ThreadGroup

    init(_ body: @escaping @Sendable () -> Void) {
        threads = ThreadGroup(1) { _ in body() }
    }

    func join(timeout: Double = 30) throws {
        try threads.join(timeout: timeout)
    }
}

/// A well-behaved sender on its own keep-alive connection: posts a small message every
/// `interval` seconds until stopped, recording what it was answered. Used to show that misbehaving
/// clients on other connections do not disturb good ones.
final class SteadyClient: @unchecked Sendable {
    let acked = LockedBox([String]())
    let failures = LockedBox([String]())
    private let stopFlag = LockedBox(false)
    private var thread: BackgroundThread?

    init(port: Int, name: String, interval: Double = 0.1, headers: [(String, String)] = []) {
        let acked = self.acked, failures = self.failures, stopFlag = self.stopFlag
        thread = BackgroundThread {
            var client: RawHTTPClient?
            var sequence = 0
            while !stopFlag.get() {
                sequence += 1
                let id = "\(name)-\(sequence)"
                do {
                    if client == nil { client = try RawHTTPClient(port: port, timeout: 5) }
                    let response = try client!.perform(
                        "POST", "/pubsub", headers: [("Content-Type", "application/json")] + headers,
                        body: wrappedEnvelope(id: id, data: Array("steady \(sequence)".utf8)))
                    if response.status == 204 {
                        acked.update { $0.append(id) }
                    } else {
                        failures.update { $0.append("\(id): status \(response.status) \(response.bodyText)") }
                    }
                    if response.closesConnection { client = nil }
                } catch {
                    failures.update { $0.append("\(id): \(error)") }
                    client = nil
                }
                usleep(useconds_t(interval * 1_000_000))
            }
        }
    }

    /// Waits until at least `count` messages were acked (or `timeout` seconds pass), so a check that
    /// the sender kept being served does not depend on how fast the rest of the test ran.
    func waitForAcks(_ count: Int, timeout: Double = 10) {
        let deadline = Date().addingTimeInterval(timeout)
        while acked.get().count < count && failures.get().isEmpty && Date() < deadline { usleep(20_000) }
    }

    /// Stops the sender and waits for its last request.
    func stop() throws {
        stopFlag.set(true)
        try thread?.join()
    }
}

/// Runs one step of a test; an error thrown by it is recorded as an issue naming the step, and the
/// test goes on with its other steps.
func step(_ name: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
    } catch {
        Issue.record("\(name): \(error)", sourceLocation: sourceLocation)
    }
}

/// `Date` header values as RFC 9110 §5.6.7 IMF-fixdate.
func isIMFFixdate(_ value: String) -> Bool {
    let pattern =
        #"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"#
    return value.range(of: pattern, options: .regularExpression) != nil
}

/// Seconds elapsed since `start`.
func secondsSince(_ start: Date) -> Double { Date().timeIntervalSince(start) }

/// The resident memory of process `pid` in bytes (VmRSS in /proc/PID/status).
func residentBytes(_ pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else {
        throw TestFailure("no VmRSS in /proc/\(pid)/status")
    }
    return kib * 1024
}

/// `GET /readyz`'s status now, on a new connection (0 when it cannot be asked).
func readyStatus(_ server: PersistorProcess) -> Int {
    (try? server.connect(timeout: 5).perform("GET", "/readyz", headers: [("Connection", "close")]))?.status ?? 0
}

/// Polls `GET /readyz` until it answers `status`; returns the seconds that took, or nil after `timeout`.
func waitForReadiness(_ server: PersistorProcess, _ status: Int, timeout: Double = 20) -> Double? {
    let start = Date()
    while secondsSince(start) < timeout {
        if readyStatus(server) == status { return secondsSince(start) }
        usleep(50_000)
    }
    return nil
}

import Foundation
import PersistorTestSupport
import Testing

/// Tests/tools/fault_proxy.py between Persistor and moto: forwards, or answers 500/503, or waits,
/// or refuses connections, as the test says; counts every request it receives.
final class FaultProxy: @unchecked Sendable {
    let port: Int
    let controlPort: Int
    private let peer: PeerProcess

    init(upstreamPort: Int) throws {
        port = try PersistorProcess.freePort()
        controlPort = try PersistorProcess.freePort()
        peer = try PeerProcess(
            "fault-proxy", executable: try testPython(),
            arguments: [
                repositoryRoot + "/Tests/tools/fault_proxy.py", String(port), String(upstreamPort), String(controlPort),
            ], port: port)
    }

    var endpoint: String { "http://127.0.0.1:\(port)" }

    /// Switches mode: `["mode": "pass"]`, `["mode": "status", "status": 503]`, `["mode": "delay", "seconds": 3]`, `["mode": "refuse"]`.
    func set(_ mode: [String: Any]) throws {
        let body = try JSONSerialization.data(withJSONObject: mode)
        let answer = try RawHTTPClient(port: controlPort).perform("POST", "/mode", headers: [("Connection", "close")], body: [UInt8](body))
        guard answer.status == 200 else { throw TestFailure("fault_proxy did not take \(mode): \(answer.status)") }
    }

    /// Requests received per `METHOD /path` since the last `reset()`.
    func requests() throws -> [String: Int] {
        let answer = try RawHTTPClient(port: controlPort).perform("GET", "/stats", headers: [("Connection", "close")])
        let stats = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
        return stats?["requests"] as? [String: Int] ?? [:]
    }

    func reset() throws {
        _ = try RawHTTPClient(port: controlPort).perform("POST", "/reset", headers: [("Connection", "close")])
    }
}

/// Small retry budgets so failures surface within seconds.
private let fastRetries = """
    storeRetry:
      attemptTimeout: 1s
      totalTimeout: 2500ms
      maxAttempts: 3
      initialBackoff: 50ms
      maxBackoff: 200ms
    """

/// Store faults (docs/stores.md#retries-and-failures), run on S3: whatever the store does wrong, a
/// delivery is acknowledged only once it is in the store, every failure is a 503 with Retry-After,
/// and Persistor recovers by itself when the store does.
@Suite(.serialized) struct StoreFaultTests {
    @Test func errorsSlownessAndRefusalGive503AndNothingUnstoredIsAcked() throws {
        let moto = try MotoS3()
        let proxy = try FaultProxy(upstreamPort: moto.port)
        let server = try PersistorProcess(
            config: fastRetries, environment: moto.environment(endpoint: proxy.endpoint),
            storeURL: "s3://bkt/faults")
        #expect(waitForReadiness(server, 200) != nil, "\(server.log)")
        var acked: [String] = []
        var sequence = 0
        func deliver() throws -> RawHTTPResponse {
            sequence += 1
            let id = "f-\(sequence)"
            let answer = try postPubSub(server, id: id, payload: Array("fault test \(sequence)".utf8))
            if answer.status == 204 { acked.append(id) }
            return answer
        }
        #expect(try deliver().status == 204)

        for status in [500, 503] {
            step("store answers \(status)") {
                try proxy.set(["mode": "status", "status": status])
                try proxy.reset()
                for _ in 0..<3 {
                    let answer = try deliver()
                    #expect(answer.status == 503 && answer.header("Retry-After") != nil, "HTTP \(status) from the store")
                }
                let puts = try proxy.requests().filter { $0.key.hasPrefix("PUT /bkt/faults/pubsub/") }
                #expect(puts.count == 3, "one object per delivery: \(puts)")
                #expect(puts.values.allSatisfy { $0 >= 2 }, "each write was retried: \(puts)")
                #expect(waitForReadiness(server, 503, timeout: 5) != nil)
            }
        }
        step("slow store (3 s per request, attemptTimeout 1 s)") {
            try proxy.set(["mode": "delay", "seconds": 3])
            let start = Date()
            let answer = try deliver()
            #expect(answer.status == 503 && answer.header("Retry-After") != nil)
            #expect(secondsSince(start) < 6, "the retry budget bounds the answer time")
        }
        step("connections refused") {
            try proxy.set(["mode": "refuse"])
            for _ in 0..<2 {
                let answer = try deliver()
                #expect(answer.status == 503 && answer.header("Retry-After") != nil)
            }
            #expect(waitForReadiness(server, 503, timeout: 5) != nil)
        }
        step("store back: readiness and deliveries recover without a restart") {
            try proxy.set(["mode": "pass"])
            #expect(waitForReadiness(server, 200, timeout: 20) != nil)
            for _ in 0..<3 { #expect(try deliver().status == 204) }
        }
        // Every acknowledged delivery is in the store (some refused ones may be too: the slow
        // store's writes arrive after the 503, which is allowed).
        let stored = try storedIDs(moto, prefix: "faults/")
        #expect(acked.count == 4)
        #expect(Set(acked).isSubset(of: stored), "acked but not stored: \(Set(acked).subtracting(stored).sorted())")
    }

    @Test func killingTheStoreMidLoadAcksNothingUntilItIsBack() throws {
        let moto = try MotoS3()
        // Persistor reaches moto through the proxy (forwarding) so that the restarted moto can be
        // provisioned again undisturbed: moto forgets everything on SIGKILL (a real store would not),
        // and its seeded bootstrap only hands out the same keys when no other request interleaves.
        let proxy = try FaultProxy(upstreamPort: moto.port)
        let server = try PersistorProcess(
            config: fastRetries, environment: moto.environment(endpoint: proxy.endpoint),
            storeURL: "s3://bkt/outage")
        #expect(waitForReadiness(server, 200) != nil, "\(server.log)")
        struct Answer { let id: String; let sent: Date; let answered: Date; let status: Int }
        let answers = LockedBox([Answer]())
        let stop = LockedBox(false)
        let client = BackgroundThread {
            var sequence = 0
            while !stop.get() {
                sequence += 1
                let id = "o-\(sequence)"
                let sent = Date()
                let status = (try? postPubSub(server, id: id, payload: Array("load \(sequence)".utf8)).status) ?? 0
                answers.update { $0.append(Answer(id: id, sent: sent, answered: Date(), status: status)) }
                usleep(50_000)
            }
        }
        defer { stop.set(true); try? client.join(timeout: 60) }
        func acks() -> Int { answers.get().filter { $0.status == 204 }.count }
        var deadline = Date().addingTimeInterval(20)
        while acks() < 5 && Date() < deadline { usleep(50_000) }
        #expect(acks() >= 5, "deliveries flow before the outage")

        moto.kill()
        let killed = Date()
        usleep(3_000_000)
        #expect(waitForReadiness(server, 503, timeout: 5) != nil, "readiness fails while the store is down")
        let restarting = Date()
        try proxy.set(["mode": "refuse"])
        try moto.restart()
        try proxy.set(["mode": "pass"])
        #expect(waitForReadiness(server, 200, timeout: 30) != nil, "readiness recovers without restarting Persistor")
        let recovered = Date()
        deadline = Date().addingTimeInterval(20)
        while answers.get().filter({ $0.status == 204 && $0.sent > recovered }).count < 5 && Date() < deadline { usleep(50_000) }
        stop.set(true)
        try client.join(timeout: 60)

        let all = answers.get()
        let duringOutage = all.filter { $0.sent > killed && $0.answered < restarting }
        let ackedDuringOutage = duringOutage.filter { (200..<300).contains($0.status) }
        #expect(!duringOutage.isEmpty, "the client kept posting during the outage")
        #expect(ackedDuringOutage.isEmpty, "acks during the outage: \(ackedDuringOutage.map(\.id))")
        #expect(duringOutage.allSatisfy { $0.status == 503 }, "\(Set(duringOutage.map(\.status)))")
        let ackedAfter = all.filter { $0.status == 204 && $0.sent > recovered }.map(\.id)
        #expect(ackedAfter.count >= 5, "deliveries flow again")
        let stored = try storedIDs(moto, prefix: "outage/")
        #expect(Set(ackedAfter).isSubset(of: stored), "acked after recovery but not stored: \(Set(ackedAfter).subtracting(stored).sorted())")
        print(
            "S3 outage: \(duringOutage.count) deliveries during the outage, \(ackedDuringOutage.count) acked; \(ackedAfter.count) acked after recovery"
        )
    }

    /// The ids of every record in the ndjson objects under `prefix`.
    private func storedIDs(_ moto: MotoS3, prefix: String) throws -> Set<String> {
        var ids = Set<String>()
        for object in try moto.objects(prefix: prefix).values where object.key.hasSuffix(".ndjson.gz") {
            for line in try systemGunzip(object.bytes).split(separator: 0x0A) {
                if let record = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any], let id = record["id"] as? String {
                    ids.insert(id)
                }
            }
        }
        return ids
    }
}

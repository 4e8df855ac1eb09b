import Foundation
import PersistorTestSupport
import Testing

/// Response ordering under load: many connections pipelining batches, group commit answering
/// many waiters at once, and every message archived exactly once.
@Suite("Response ordering under load end to end")
struct StressTests {
    @Test("8 connections × 100 posts pipelined in batches of 10: in-order answers, 800 ids archived once")
    func pipelinedBatches() throws {
        let server = try PersistorProcess()
        let port = server.port
        let problems = LockedBox([String]())
        let acked = LockedBox(Set<String>())

        try runOnThreads(8, timeout: 50) { connection in
            do {
                let client = try RawHTTPClient(port: port, timeout: 20)
                for batch in 0..<10 {
                    // Ten posts with a GET /healthz at a varying position: the GET is answered at
                    // once by the server, the posts after their batch is durable, so an answer out of
                    // order shows up as a wrong status.
                    var wire: [UInt8] = []
                    var expected: [(id: String?, status: Int)] = []
                    let getPosition = (batch + connection) % 11
                    for slot in 0..<11 {
                        if slot == getPosition {
                            wire += RawHTTPClient.request("GET", "/healthz")
                            expected.append((nil, 200))
                        }
                        if slot < 10 {
                            let id = "stress-\(connection)-\(batch * 10 + slot)"
                            let payload =
                                Array("connection \(connection) message \(batch * 10 + slot) ".utf8)
                                + pseudoRandomBytes(count: 200, seed: UInt64(connection * 1000 + batch * 10 + slot))
                            wire += RawHTTPClient.request(
                                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                                body: wrappedEnvelope(id: id, data: payload))
                            expected.append((id, 204))
                        }
                    }
                    try client.send(wire)
                    for (id, status) in expected {
                        let response = try client.readResponse()
                        if response.status != status {
                            problems.update {
                                $0.append(
                                    "connection \(connection) batch \(batch): expected \(status) for \(id ?? "GET /healthz"), got \(response.status)")
                            }
                        } else if let id {
                            acked.update { _ = $0.insert(id) }
                        }
                    }
                }
            } catch {
                problems.update { $0.append("connection \(connection): \(error)") }
            }
        }
        for text in problems.get().prefix(20) { Issue.record(Comment(rawValue: text)) }
        #expect(acked.get().count == 800, "\(acked.get().count) of 800 posts answered 204")

        let objects = try readArchive(server.store)
        var counts: [String: Int] = [:]
        for record in objects.flatMap(\.records) { counts[record.id, default: 0] += 1 }
        let expectedIDs = Set((0..<8).flatMap { c in (0..<100).map { "stress-\(c)-\($0)" } })
        #expect(
            Set(counts.keys) == expectedIDs,
            "archived ids differ: missing \(expectedIDs.subtracting(counts.keys).count), unexpected \(Set(counts.keys).subtracting(expectedIDs).count)"
        )
        let duplicated = counts.filter { $0.value != 1 }
        #expect(duplicated.isEmpty, "ids archived more than once: \(duplicated.prefix(10))")
        // Payloads survive batching intact.
        for record in objects.flatMap(\.records).prefix(800) {
            let id = record.id
            guard id.hasPrefix("stress-") else { continue }
            let parts = id.split(separator: "-")
            let connection = Int(parts[1])!, index = Int(parts[2])!
            let expected =
                Array("connection \(connection) message \(index) ".utf8) + pseudoRandomBytes(count: 200, seed: UInt64(connection * 1000 + index))
            if record.payload != expected { Issue.record("payload of \(id) differs") }
        }
        try expectObjectKeys(objects, route: "pubsub")
        print("ordering stress: 800 posts in \(objects.count) archive objects")
    }
}

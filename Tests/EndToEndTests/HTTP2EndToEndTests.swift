import Foundation
import PersistorTestSupport
import Testing

/// HTTP/2 cleartext against the real binary on its one listener: curl with prior knowledge and
/// with `Upgrade: h2c`, and the Python `h2` library with many concurrent streams on one connection.
/// Every acknowledged delivery must be in the archive, byte for byte.
@Suite(.serialized) struct HTTP2EndToEndTests {
    /// Runs curl on `body` and returns (status, HTTP version curl used).
    func curl(
        _ mode: String, _ server: PersistorProcess, _ path: String, body: [UInt8],
        contentType: String = "application/json"
    ) throws -> (status: Int, version: String) {
        let curl = try requireTool("curl", install: "apt-get install -y curl")
        let result = try runProcess(
            curl,
            [
                "-sS", mode, "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                "-H", "Content-Type: \(contentType)", "--data-binary", "@-",
                "http://127.0.0.1:\(server.port)\(path)",
            ], input: body)
        guard result.status == 0 else { throw TestFailure("curl \(mode) failed: \(result.stderr)") }
        let parts = String(decoding: result.stdout, as: UTF8.self).split(separator: " ")
        return (Int(parts.first ?? "") ?? 0, parts.count > 1 ? String(parts[1]) : "")
    }

    @Test func curlPostsPubSubAndEventGridOverPriorKnowledgeAndUpgrade() throws {
        let server = try PersistorProcess()
        var expected: [String: [UInt8]] = [:]
        for mode in ["--http2-prior-knowledge", "--http2"] {
            let id = "curl\(mode)"
            let payload = pseudoRandomBytes(count: 700, seed: UInt64(mode.count))
            expected[id] = payload
            let answer = try curl(mode, server, "/pubsub", body: wrappedEnvelope(id: id, data: payload))
            #expect(answer.status == 204, "\(mode): Pub/Sub answered \(answer.status)")
            #expect(answer.version == "2", "\(mode): curl spoke HTTP/\(answer.version)")

            let event =
                #"{"id":"grid\#(mode)","eventType":"Contoso.Created","subject":"s","eventTime":"2026-11-26T19:00:00Z","data":{"mode":"\#(mode)"}}"#
            expected["grid\(mode)"] = Array(event.utf8)
            let grid = try curl(mode, server, "/eventgrid", body: Array("[\(event)]".utf8))
            #expect(grid.status == 200, "\(mode): Event Grid answered \(grid.status)")
            #expect(grid.version == "2", "\(mode): curl spoke HTTP/\(grid.version)")
        }
        server.terminate()
        #expect(try server.waitForExit(timeout: 20) == 0)
        let records = try allRecords(server.store)
        #expect(records.count == expected.count, "\(records.map(\.id))")
        for (id, payload) in expected {
            let found = records.filter { $0.id == id }
            #expect(found.count == 1, "\(id) archived once")
            #expect(found.first?.payload == payload, "\(id): payload bytes")
        }
    }

    @Test func twoHundredDeliveriesOnOneConnectionWithAHundredConcurrentStreams() throws {
        let server = try PersistorProcess()
        var requests: [[String: Any]] = []
        var payloads: [String: [UInt8]] = [:]
        for index in 0..<200 {
            let id = "h2-\(index)"
            let payload = pseudoRandomBytes(count: 200 + index * 7, seed: UInt64(index + 1))
            payloads[id] = payload
            requests.append([
                "method": "POST", "path": "/pubsub", "headers": [["content-type", "application/json"]],
                "body_b64": Data(wrappedEnvelope(id: id, data: payload, attributes: ["n": "\(index)"])).base64EncodedString(),
            ])
        }
        let input = try JSONSerialization.data(withJSONObject: ["requests": requests, "concurrency": 100])
        let result = try runProcess(
            try testPython(),
            [
                repositoryRoot + "/Tests/tools/h2_client.py", "requests",
                "--port", String(server.port),
            ], input: [UInt8](input))
        try #require(result.status == 0, "h2_client.py failed: \(result.stderr)")
        let output = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any])
        let responses = output["responses"] as? [[String: Any]] ?? []
        #expect(responses.count == 200)
        #expect(responses.allSatisfy { $0["status"] as? Int == 204 }, "every delivery acked")
        let streams = Set(responses.compactMap { $0["stream"] as? Int })
        #expect(streams.count == 200, "200 streams on the one connection")

        let records = try allRecords(server.store)
        let byID = Dictionary(grouping: records, by: \.id)
        for (id, payload) in payloads {
            #expect(byID[id]?.count == 1, "\(id) archived once")
            #expect(byID[id]?.first?.payload == payload, "\(id): payload bytes")
            #expect(byID[id]?.first?.attributes?["n"] == String(id.dropFirst(3)))
        }
    }
}

import Foundation
import PersistorTestSupport
import Testing

/// The archive as users read it: raw mode's create-only objects, and DuckDB over ndjson.
@Suite(.serialized) struct ArchiveLayoutTests {
    func post(
        _ server: PersistorProcess, _ path: String, _ body: String, headers: [(String, String)] = [("Content-Type", "application/json")]
    ) throws -> Int {
        let client = try server.connect()
        try client.send(RawHTTPClient.request("POST", path, headers: headers, body: body))
        return try client.readResponse().status
    }

    @Test func rawModeStoresARedeliveryOnceAndAcksBoth() throws {
        let server = try PersistorProcess(
            config: """
                archive:
                  format: raw
                  path: "{route}/{yyyy}/{MM}/{dd}"
                """)
        let envelope =
            #"{"message":{"data":"aGVsbG8=","messageId":"42","publishTime":"2021-02-26T19:13:55.749Z","attributes":{"k":"v"}},"subscription":"projects/p/subscriptions/s"}"#
        #expect(try post(server, "/pubsub", envelope) == 204)
        #expect(try post(server, "/pubsub", envelope) == 204)
        #expect(try post(server, "/eventgrid", #"[{"id":"../../escape","eventType":"t","eventTime":"2021-02-26T10:00:00Z","data":{}}]"#) == 200)
        let files = server.store.files()
        #expect(files.count == 4, "\(files)")
        #expect(isRawObjectKey(files[0], base: "eventgrid/2021/02/26/%2E.%2F..%2Fescape", ext: "gz"), "\(files)")
        #expect(isRawObjectKey(files[1], base: "eventgrid/2021/02/26/%2E.%2F..%2Fescape", ext: "json"), "\(files)")
        let gz = try #require(files.first { isRawObjectKey($0, base: "pubsub/2021/02/26/42", ext: "gz") }, "\(files)")
        let json = try #require(files.first { isRawObjectKey($0, base: "pubsub/2021/02/26/42", ext: "json") }, "\(files)")
        #expect(gz.dropLast(3) == json.dropLast(5), "payload and sidecar share their name")
        let payload = try systemGunzip([UInt8](Data(contentsOf: URL(fileURLWithPath: server.store.path + "/" + gz))))
        #expect(payload == Array("hello".utf8))
        let sidecar = try #require(
            JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: server.store.path + "/" + json))) as? [String: Any])
        #expect(sidecar["id"] as? String == "42")
        #expect(sidecar["eventTime"] as? String == "2021-02-26T19:13:55.749Z")
        #expect(sidecar["attributes"] as? [String: String] == ["k": "v"])
        #expect(sidecar["formatVersion"] as? String == "1")
    }

    @Test func hostileAttributesCannotLeaveTheStore() throws {
        let server = try PersistorProcess(
            config: """
                routes:
                  - name: orders
                    path: /pubsub
                    kind: pubsub
                    delivery: unwrapped
                archive:
                  path: "{route}/{attr:tenant}/{attr:region}"
                """)
        let hostile = ["../../../../tmp/escaped", "..", "%2e%2e", "/etc", String(repeating: "x", count: 4000)]
        for (index, value) in hostile.enumerated() {
            #expect(try post(server, "/pubsub", "payload \(index)", headers: [("Tenant", value), ("Region", "..")]) == 204)
        }
        let objects = server.store.files()
        #expect(objects.count == hostile.count)
        for object in objects {
            let segments = object.split(separator: "/")
            #expect(segments.count == 4 && segments[0] == "orders", "\(object)")
            #expect(!segments.contains("..") && !segments.contains("."), "\(object)")
            #expect(segments[2] == "%2E%2E", "a '..' value is encoded")
            #expect(segments[1].utf8.count <= 128)
        }
        #expect(!FileManager.default.fileExists(atPath: "/tmp/escaped"))
        #expect(try allRecords(server.store).count == hostile.count)
    }

    @Test func duckDBReadsTheHiveStyleArchiveAsIs() throws {
        let started = UTCHour(Date())
        let server = try PersistorProcess(
            config: """
                archive:
                  path: "{route}/dt={yyyy}-{MM}-{dd}/hour={HH}"
                """)
        let binary: [UInt8] = [0x00, 0x9F, 0xFF, 0x10]
        var sent: [String: [UInt8]] = [:]
        func pubsub(_ id: String, _ payload: [UInt8]) throws {
            sent[id] = payload
            #expect(try post(server, "/pubsub", #"{"message":{"data":"\#(Data(payload).base64EncodedString())","messageId":"\#(id)"}}"#) == 204)
        }
        try pubsub("p1", Array(#"{"order":1,"note":"é \" \\ \n"}"#.utf8))
        try pubsub("p2", binary)
        let event = #"{"id":"e1","eventType":"Contoso.Created","subject":"s","eventTime":"2026-11-26T19:00:00Z","data":{"x":[1,2]}}"#
        #expect(try post(server, "/eventgrid", "[\(event)]") == 200)
        sent["e1"] = Array(event.utf8)
        let bad = #"{"message":{"data":"!!!","messageId":"p3"}}"#
        #expect(try post(server, "/pubsub", bad) == 204)
        // A batch big enough (over 32 KiB per processor) to be compressed in parallel pieces.
        let big = (0..<100).map { i in
            #"{"id":"big-\#(i)","eventType":"Contoso.Bulk","subject":"s","eventTime":"2026-11-26T19:00:00Z","data":{"n":\#(i),"pad":"\#(String(repeating: "abcdefghij", count: 120))"}}"#
        }
        #expect(try post(server, "/eventgrid", "[\(big.joined(separator: ","))]") == 200)
        for (i, event) in big.enumerated() { sent["big-\(i)"] = Array(event.utf8) }

        let output = try runPythonTool("duckdb_read.py", [server.store.path])
        let rows = try #require(output["rows"] as? [[String: String]])
        var byID: [String: [String: String]] = [:]
        for row in rows { byID[row["id"] ?? ""] = row }
        #expect(rows.count == 104)
        for (id, payload) in sent {
            let row = try #require(byID[id], "\(id) is readable with DuckDB")
            #expect(Data(base64Encoded: row["payload_b64"] ?? "").map { [UInt8]($0) } == payload, "\(id)")
        }
        #expect(byID["e1"]?["source"] == "eventgrid" && byID["e1"]?["route"] == "eventgrid")
        // DuckDB detects the timestamps and reads them as TIMESTAMP WITH TIME ZONE.
        #expect(byID["e1"]?["eventTime"]?.hasPrefix("2026-11-26 19:00:00") == true)
        let unparsed = try #require(rows.first { $0["source"] == "unparsed" })
        #expect(Data(base64Encoded: unparsed["payload_b64"] ?? "").map { [UInt8]($0) } == Array(bad.utf8))
        // The deliveries were received between `started` and now, in one or two (day, hour) partitions.
        let partitions = [started, UTCHour(Date())]
        #expect(
            rows.allSatisfy { row in partitions.contains { $0.day == row["dt"] && $0.hour == row["hour"].flatMap { Int($0) } } },
            "hive partition columns come from the path: \(rows.map { ($0["dt"] ?? "-", $0["hour"] ?? "-") }), expected one of \(partitions)")
    }
}

/// Today's UTC date and hour, as the receive-time path template writes them.
/// A UTC day (`yyyy-MM-dd`) and hour, as the Hive-style path names them.
private struct UTCHour: Equatable {
    let day: String
    let hour: Int

    init(_ date: Date) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour], from: date)
        day = String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
        hour = parts.hour!
    }
}

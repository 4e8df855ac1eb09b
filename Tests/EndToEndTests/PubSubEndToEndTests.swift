import Foundation
import PersistorTestSupport
import Testing

/// Pub/Sub push deliveries against the real binary: every shape of docs/deliveries-and-auth.md#pubsub-push,
/// answered 204, then read back from the archive with the system gzip and compared field by field.
@Suite("Pub/Sub push end to end")
struct PubSubEndToEndTests {
    // The push example of https://cloud.google.com/pubsub/docs/push, verbatim.
    static let officialVector = """
        {
            "message": {
                "attributes": {
                    "key": "value"
                },
                "data": "SGVsbG8gQ2xvdWQgUHViL1N1YiEgSGVyZSBpcyBteSBtZXNzYWdlIQ==",
                "messageId": "2070443601311540",
                "message_id": "2070443601311540",
                "publishTime": "2021-02-26T19:13:55.749Z",
                "publish_time": "2021-02-26T19:13:55.749Z"
            },
           "subscription": "projects/myproject/subscriptions/mysubscription"
        }
        """

    // Every field of https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage and the push
    // envelope (constructed, not an official example).
    static let allFieldsVector = """
        {
          "message": {
            "attributes": {"Content-Type": "application/json", "k": "v"},
            "data": "eyJzdGF0dXMiOiAiSGVsbG8gdGhlcmUifQ==",
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "publishTime": "2021-02-26T19:13:55.749123456Z",
            "publish_time": "2021-02-26T19:13:55.749123456Z",
            "orderingKey": "some-key"
          },
          "subscription": "projects/myproject/subscriptions/mysubscription",
          "deliveryAttempt": 3
        }
        """

    static let subscription = "projects/myproject/subscriptions/mysubscription"
    static let json: [(String, String)] = [("Content-Type", "application/json")]

    enum Meta {
        case string(String)
        case int(Int)
        case bool(Bool)
    }

    @Test("every delivery shape is answered 204 and archived with exact fields and payload bytes")
    func deliveryShapes() throws {
        let server = try PersistorProcess()
        let client = try server.connect(timeout: 20)
        let started = Date()

        func post(_ name: String, _ body: [UInt8], headers: [(String, String)] = PubSubEndToEndTests.json) throws {
            let response = try client.perform("POST", "/pubsub", headers: headers, body: body)
            #expect(response.status == 204, "\(name): answered \(response.status) \(response.bodyText)")
            #expect(response.body.isEmpty, "\(name): a 204 has no body")
            #expect(response.header("Content-Length") == nil, "\(name): a 204 must not carry Content-Length (RFC 9110 §8.6)")
            #expect(response.header("Date").map(isIMFFixdate) == true, "\(name): Date header missing or malformed")
        }

        // (a) official wrapped vector, (b) all-fields vector.
        try post("official", Array(Self.officialVector.utf8))
        try post("all fields", Array(Self.allFieldsVector.utf8))
        // (c) snake_case-only ids, publishTime with 0 fractional digits.
        let snakeBody =
            #"{"message":{"data":"c25ha2UgY2FzZSBvbmx5","message_id":"e2e-snake-1","publish_time":"2021-02-26T19:13:55Z"},"subscription":"projects/p/subscriptions/snake"}"#
        try post("snake_case", Array(snakeBody.utf8))
        // (d) attributes only, no data.
        let attributesOnly =
            #"{"message":{"attributes":{"only":"attributes","Content-Type":"text/plain"},"messageId":"e2e-attrs-only","publishTime":"2021-02-26T19:13:56.000Z"},"subscription":"projects/p/subscriptions/s"}"#
        try post("attributes only", Array(attributesOnly.utf8))
        // (e) no attributes, publishTime with 6 fractional digits.
        let noAttributes =
            #"{"message":{"data":"bm8gYXR0cmlidXRlcw==","messageId":"e2e-no-attrs","publishTime":"2021-02-26T19:13:55.749123Z"},"subscription":"projects/p/subscriptions/s"}"#
        try post("no attributes", Array(noAttributes.utf8))
        // (f) binary data, every byte value.
        let allBytes = (0...255).map { UInt8($0) }
        try post("binary", wrappedEnvelope(id: "e2e-binary", data: allBytes, attributes: ["kind": "binary"]))
        // (k) message.data written with JSON escapes (`\/` and `\u00XX`): the string's value is what decodes.
        let escapedPayload = pseudoRandomBytes(count: 300, seed: 42)
        let escapedBase64 = Data(escapedPayload).base64EncodedString()
        try #require(escapedBase64.contains("/"), "the seed must give a base64 text with '/'")
        let escapedData =
            String(format: "\\u%04X", escapedBase64.unicodeScalars.first!.value)
            + String(escapedBase64.dropFirst()).replacingOccurrences(of: "/", with: "\\/")
        let escapedBody = #"{"message":{"data":"\#(escapedData)","messageId":"e2e-json-escapes"},"subscription":"projects/p/subscriptions/s"}"#
        try post("JSON escapes", Array(escapedBody.utf8))
        // (g) unwrapped with metadata headers (https://cloud.google.com/pubsub/docs/payload-unwrapping).
        let unwrappedBody = Array(#"{"status": "Hello there"}"#.utf8)
        try post(
            "unwrapped", unwrappedBody,
            headers: [
                ("Content-Type", "application/json"),
                ("x-goog-pubsub-subscription-name", Self.subscription),
                ("x-goog-pubsub-message-id", "e2e-unwrapped-1"),
                ("x-goog-pubsub-publish-time", "2021-02-26T19:13:55.749Z"),
                ("x-goog-pubsub-ordering-key", "some-key"),
                ("Authorization", "Bearer e2e.not.checked"),
                ("User-Agent", "CloudPubSub-Google"),
                ("X-Custom-Attr", "Value One"),
                ("k", "v"),
            ])
        // (h) unwrapped without metadata: bodies that are not a wrapped envelope.
        let plainOne = Array("plain text payload one\n".utf8)
        let plainTwo = Array(#"{"not": "an envelope"}"#.utf8)
        try post("no metadata 1", plainOne, headers: [("Content-Type", "text/plain")])
        try post("no metadata 2", plainTwo, headers: [("Content-Type", "text/plain")])
        // (i) a wrapped envelope with bad base64: quarantined, still acked.
        let badBase64 = Array(#"{"message":{"data":"not*valid*base64!","messageId":"e2e-bad-b64"},"subscription":"projects/p/subscriptions/s"}"#.utf8)
        try post("bad base64", badBase64)
        let finished = Date()

        let objects = try readArchive(server.store)
        let records = objects.flatMap(\.records)
        #expect(records.count == 11, "11 deliveries were acked; the archive holds \(records.count) records")

        func one(_ name: String, _ match: (ArchivedRecord) -> Bool) throws -> ArchivedRecord {
            let found = records.filter(match)
            try #require(found.count == 1, "\(name): expected exactly one record, found \(found.count)")
            return found[0]
        }
        func check(
            _ name: String, _ record: ArchivedRecord, id: String? = nil, source: String = "pubsub",
            eventTime: String?, attributes: [String: String], meta: [String: Meta]?, payload: [UInt8], base64: Bool
        ) {
            if let id { #expect(record.id == id, "\(name): id") }
            #expect(record.source == source, "\(name): source")
            #expect(record.fields["route"] as? String == "pubsub", "\(name): route")
            #expect(record.fields["eventTime"] as? String == eventTime, "\(name): eventTime \(String(describing: record.fields["eventTime"]))")
            if eventTime == nil { #expect(record.fields["eventTime"] == nil, "\(name): eventTime must be omitted when absent") }
            #expect(record.attributes == attributes, "\(name): attributes \(String(describing: record.attributes))")
            if let meta { expectMeta(name, record, meta) }
            #expect(record.payload == payload, "\(name): payload bytes differ (\(record.payload?.count ?? -1) vs \(payload.count) bytes)")
            if base64 {
                #expect(record.fields["dataBase64"] is String && record.fields["data"] == nil, "\(name): non-UTF-8 payload must be dataBase64")
            } else {
                #expect(record.fields["data"] is String && record.fields["dataBase64"] == nil, "\(name): UTF-8 payload must be data")
            }
            expectReceivedAt(name, record, between: started, and: finished)
        }

        let official = try one("official") { $0.fields["eventTime"] as? String == "2021-02-26T19:13:55.749Z" && $0.id == "2070443601311540" }
        check(
            "official", official, id: "2070443601311540", eventTime: "2021-02-26T19:13:55.749Z",
            attributes: ["key": "value"], meta: ["subscription": .string(Self.subscription)],
            payload: Array("Hello Cloud Pub/Sub! Here is my message!".utf8), base64: false)

        let allFields = try one("all fields") { $0.fields["eventTime"] as? String == "2021-02-26T19:13:55.749123456Z" }
        check(
            "all fields", allFields, id: "2070443601311540", eventTime: "2021-02-26T19:13:55.749123456Z",
            attributes: ["Content-Type": "application/json", "k": "v"],
            meta: ["subscription": .string(Self.subscription), "orderingKey": .string("some-key"), "deliveryAttempt": .int(3)],
            payload: Array(#"{"status": "Hello there"}"#.utf8), base64: false)

        check(
            "snake_case", try one("snake_case") { $0.id == "e2e-snake-1" }, eventTime: "2021-02-26T19:13:55Z",
            attributes: [:], meta: ["subscription": .string("projects/p/subscriptions/snake")],
            payload: Array("snake case only".utf8), base64: false)

        check(
            "attributes only", try one("attributes only") { $0.id == "e2e-attrs-only" }, eventTime: "2021-02-26T19:13:56.000Z",
            attributes: ["only": "attributes", "Content-Type": "text/plain"],
            meta: ["subscription": .string("projects/p/subscriptions/s")], payload: [], base64: false)

        check(
            "no attributes", try one("no attributes") { $0.id == "e2e-no-attrs" }, eventTime: "2021-02-26T19:13:55.749123Z",
            attributes: [:], meta: ["subscription": .string("projects/p/subscriptions/s")],
            payload: Array("no attributes".utf8), base64: false)

        check(
            "binary", try one("binary") { $0.id == "e2e-binary" }, eventTime: "2021-02-26T19:13:55.749Z",
            attributes: ["kind": "binary"], meta: ["subscription": .string(Self.subscription)],
            payload: allBytes, base64: true)

        check(
            "JSON escapes", try one("JSON escapes") { $0.id == "e2e-json-escapes" }, eventTime: nil,
            attributes: [:], meta: ["subscription": .string("projects/p/subscriptions/s")],
            payload: escapedPayload, base64: true)

        check(
            "unwrapped", try one("unwrapped") { $0.id == "e2e-unwrapped-1" }, eventTime: "2021-02-26T19:13:55.749Z",
            attributes: ["content-type": "application/json", "x-custom-attr": "Value One", "k": "v"],
            meta: ["subscription": .string(Self.subscription), "orderingKey": .string("some-key")],
            payload: unwrappedBody, base64: false)

        let first = try one("no metadata 1") { $0.payload == plainOne }
        let second = try one("no metadata 2") { $0.payload == plainTwo }
        for (name, record, body) in [("no metadata 1", first, plainOne), ("no metadata 2", second, plainTwo)] {
            check(
                name, record, eventTime: nil, attributes: ["content-type": "text/plain"],
                meta: ["idAssigned": .bool(true)], payload: body, base64: false)
            #expect(!record.id.isEmpty, "\(name): an assigned id")
        }
        #expect(first.id != second.id, "assigned ids must be unique")

        let quarantined = try one("bad base64") { $0.source == "unparsed" }
        check(
            "bad base64", quarantined, id: "unparsed-" + (try sha256Hex(badBase64)), source: "unparsed",
            eventTime: nil, attributes: [:], meta: nil, payload: badBase64, base64: false)

        // Object keys: pubsub/YYYY/MM/DD/HH/<yyyyMMdd'T'HHmmss.SSS'Z'>-<12 hex>-<12 digits>.ndjson.gz
        try expectObjectKeys(objects, route: "pubsub")
        let strays = server.store.files().filter { !$0.hasSuffix(".ndjson.gz") }
        #expect(strays.isEmpty, "only archive objects belong in the store once everything is acked: \(strays)")
    }

    @Test("a 10 MB binary message in a wrapped envelope round-trips byte for byte")
    func tenMegabyteMessage() throws {
        let server = try PersistorProcess()
        let payload = pseudoRandomBytes(count: 10_000_000, seed: 0x5EED)
        let body = wrappedEnvelope(id: "e2e-10mb", data: payload, attributes: ["size": "10MB"])
        #expect(body.count > 13_000_000, "the envelope is the ≈13.4 MB base64 form")
        let client = try server.connect(timeout: 30)
        let response = try client.perform("POST", "/pubsub", headers: Self.json, body: body)
        #expect(response.status == 204, "answered \(response.status) \(response.bodyText)")

        let objects = try readArchive(server.store)
        let records = objects.flatMap(\.records)
        try #require(records.count == 1, "expected one record, found \(records.count)")
        let record = records[0]
        #expect(record.id == "e2e-10mb")
        #expect(record.attributes == ["size": "10MB"])
        #expect(record.fields["dataBase64"] is String, "random bytes are not UTF-8, so the payload must be dataBase64")
        let archived = try #require(record.payload, "record has no decodable payload")
        #expect(archived.count == payload.count)
        #expect(archived == payload, "payload bytes differ")
        try expectObjectKeys(objects, route: "pubsub")
    }

    @Test("unwrapped attributes from headers: OWS trimmed, UTF-8 values kept, repeated names one key")
    func unwrappedHeaderAttributes() throws {
        let server = try PersistorProcess()
        let client = try server.connect()
        var wire = Array("POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nx-goog-pubsub-message-id: unwrapped-headers\r\n".utf8)
        wire += Array("X-Spaced:   spaced value  \r\n".utf8)
        wire += Array("X-Name: ".utf8) + Array("café ☕".utf8) + Array("\r\n".utf8)
        wire += Array("Dup: a\r\nDup: b\r\nContent-Length: 2\r\n\r\nhi".utf8)
        try client.send(wire)
        #expect(try client.readResponse().status == 204)

        let record = try #require(try allRecords(server.store).first { $0.id == "unwrapped-headers" })
        let attributes = record.attributes ?? [:]
        #expect(attributes["x-spaced"] == "spaced value", "leading and trailing whitespace is not part of a field value")
        #expect(
            attributes["x-name"] == "café ☕",
            "a UTF-8 header value (a Pub/Sub attribute is a UTF-8 string) must be archived as the same text, got \(attributes["x-name"].map { $0.debugDescription } ?? "nothing")"
        )
        let dupKeys = record.line.components(separatedBy: "\"dup\":").count - 1
        #expect(
            dupKeys == 1, "a repeated header must give one attribute key, not a JSON object with duplicate names (RFC 8259 §4); line: \(record.line)")
        #expect(attributes["dup"] == "a, b", "repeated field lines combine as 'a, b' (RFC 9110 §5.3)")
    }

    // MARK: Checks

    func expectMeta(_ name: String, _ record: ArchivedRecord, _ expected: [String: Meta]) {
        guard let meta = record.meta else {
            Issue.record("\(name): record has no meta object")
            return
        }
        #expect(Set(meta.keys) == Set(expected.keys), "\(name): meta keys \(meta.keys.sorted()) expected \(expected.keys.sorted())")
        for (key, value) in expected {
            switch value {
            case .string(let text):
                #expect(meta[key] as? String == text, "\(name): meta.\(key)")
            case .int(let number):
                #expect(!(meta[key] is String) && (meta[key] as? NSNumber)?.intValue == number, "\(name): meta.\(key) must be the number \(number)")
                #expect(
                    record.line.range(of: #""\#(key)"\s*:\s*\#(number)[,}]"#, options: .regularExpression) != nil,
                    "\(name): meta.\(key) must be a JSON number")
            case .bool(let flag):
                #expect(
                    record.line.range(of: #""\#(key)"\s*:\s*\#(flag)"#, options: .regularExpression) != nil,
                    "\(name): meta.\(key) must be JSON \(flag)")
            }
        }
    }

    func expectReceivedAt(_ name: String, _ record: ArchivedRecord, between start: Date, and end: Date) {
        guard let text = record.fields["receivedAt"] as? String,
            text.range(of: #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"#, options: .regularExpression) != nil
        else {
            Issue.record("\(name): receivedAt missing or not yyyy-MM-ddTHH:mm:ss.SSSZ: \(String(describing: record.fields["receivedAt"]))")
            return
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        guard let date = formatter.date(from: text) else {
            Issue.record("\(name): receivedAt \(text) does not parse")
            return
        }
        #expect(
            date >= start.addingTimeInterval(-1) && date <= end.addingTimeInterval(1),
            "\(name): receivedAt \(text) is outside the test's run \(start)…\(end)")
    }
}

/// Checks every object key against `{route}/{yyyy}/{MM}/{dd}/{HH}/<ts>-<instance>-<seq>.ndjson.gz`
/// (docs/archive-format.md#objects): directories agree with the timestamp, the timestamp is the
/// first record's receive time, one instance per process, unique sequence numbers.
func expectObjectKeys(_ objects: [ArchivedObject], route: String) throws {
    let pattern = try Regex(
        #"^([^/]+)/([0-9]{4})/([0-9]{2})/([0-9]{2})/([0-9]{2})/(([0-9]{8})T([0-9]{6})\.([0-9]{3})Z)-([0-9a-f]{12})-([0-9]{12})\.ndjson\.gz$"#)
    var instances = Set<String>()
    var sequences = Set<String>()
    for object in objects {
        guard let match = try pattern.wholeMatch(in: object.path) else {
            Issue.record("object key \(object.path) does not match \(route)/YYYY/MM/DD/HH/<yyyyMMdd'T'HHmmss.SSS'Z'>-<12 hex>-<12 digits>.ndjson.gz")
            continue
        }
        func group(_ index: Int) -> String { match.output[index].substring.map(String.init) ?? "" }
        #expect(group(1) == route, "\(object.path): route directory")
        #expect(group(2) + group(3) + group(4) == group(7), "\(object.path): date directories disagree with the timestamp")
        #expect(group(5) == String(group(8).prefix(2)), "\(object.path): hour directory disagrees with the timestamp")
        instances.insert(group(10))
        #expect(sequences.insert(group(11)).inserted, "\(object.path): sequence number reused")
        if let first = object.records.first, let receivedAt = first.fields["receivedAt"] as? String {
            let compact = receivedAt.replacingOccurrences(of: "-", with: "").replacingOccurrences(of: ":", with: "")
            #expect(compact == group(6), "\(object.path): timestamp must be the first record's receivedAt (\(receivedAt))")
        }
        #expect(!object.records.isEmpty, "\(object.path) holds no records")
    }
    #expect(instances.count <= 1, "one process writes one instance id, found \(instances.sorted())")
}

import Foundation
import PersistorTestSupport
import Testing

/// Event Grid and CloudEvents deliveries produced by the official SDKs (azure-eventgrid,
/// azure-core, the CNCF cloudevents SDK), posted to the running binary, read back from the archive.
@Suite(.serialized) struct EventGridEndToEndTests {
    static let config = """
        routes:
          - name: grid
            path: /api/events
            kind: eventgrid
        """

    /// What the SDK sent: the exact request bodies and the event ids.
    struct Sent {
        let bodies: [[UInt8]]
        let headers: [[String: String]]
        let ids: [String]
        let status: Int
    }

    func send(_ mode: String, to server: PersistorProcess) throws -> Sent {
        let output = try runPythonTool("eventgrid_send.py", [mode, "http://127.0.0.1:\(server.port)/api/events"])
        let requests = try #require(output["requests"] as? [[String: Any]])
        return Sent(
            bodies: try requests.map { try #require(Data(base64Encoded: $0["body_b64"] as? String ?? "")).map { $0 } },
            headers: requests.map { ($0["headers"] as? [String: String]) ?? [:] },
            ids: (output["ids"] as? [String]) ?? [],
            status: (output["status"] as? Int) ?? 0)
    }

    /// True when `needle` occurs in `haystack` as a contiguous byte run.
    func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return true }
        }
        return false
    }

    @Test func eventGridSchemaBatchFromThePublisherSDK() throws {
        let server = try PersistorProcess(config: Self.config)
        let sent = try send("eventgrid-batch", to: server)
        #expect(sent.status == 200)
        let records = try allRecords(server.store)
        #expect(records.map(\.id).sorted() == sent.ids.sorted())
        let body = try #require(sent.bodies.first)
        let parsedBody = try #require(JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]])
        for record in records {
            #expect(record.source == "eventgrid")
            let payload = try #require(record.payload)
            #expect(contains(body, payload), "the payload is the exact bytes of one event of the request body")
            let event = try #require(JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
            #expect(event["id"] as? String == record.id)
            #expect(parsedBody.contains { $0["id"] as? String == record.id })
            let meta = try #require(record.meta)
            #expect(meta["eventType"] as? String == event["eventType"] as? String)
            #expect(meta["subject"] as? String == event["subject"] as? String)
            #expect(record.fields["eventTime"] as? String == event["eventTime"] as? String)
        }
    }

    @Test func cloudEventsFromTheAzureSDKIncludingBinaryData() throws {
        let server = try PersistorProcess(config: Self.config)
        let sent = try send("cloudevent-azure", to: server)
        #expect(sent.status == 200)
        let body = try #require(sent.bodies.first)
        let records = try allRecords(server.store)
        #expect(records.map(\.id).sorted() == sent.ids.sorted())
        for record in records {
            #expect(record.source == "cloudevents")
            let payload = try #require(record.payload)
            #expect(contains(body, payload))
        }
        let binary = try #require(records.first { ($0.meta?["type"] as? String) == "Contoso.Orders.Binary" })
        let binaryPayload = try #require(binary.payload)
        let event = try #require(JSONSerialization.jsonObject(with: Data(binaryPayload)) as? [String: Any])
        #expect(Data(base64Encoded: event["data_base64"] as? String ?? "") == Data([0x00, 0x01, 0xFE, 0xFF]))
    }

    @Test func structuredCloudEventFromTheCNCFSDK() throws {
        let server = try PersistorProcess(config: Self.config)
        let sent = try send("ce-structured", to: server)
        #expect(sent.status == 200)
        let records = try allRecords(server.store)
        #expect(records.count == 1)
        let record = try #require(records.first)
        #expect(record.id == sent.ids.first)
        #expect(record.source == "cloudevents")
        #expect(record.payload == sent.bodies.first, "a structured event is the whole body")
        #expect(record.meta?["type"] as? String == "com.example.structured")
    }

    @Test func binaryCloudEventFromTheCNCFSDK() throws {
        let server = try PersistorProcess(config: Self.config)
        let sent = try send("ce-binary", to: server)
        #expect(sent.status == 200)
        let record = try #require(try allRecords(server.store).first)
        #expect(record.id == sent.ids.first)
        #expect(record.source == "cloudevents")
        #expect(record.payload == Array("\u{0}binary".utf8) + [0xFF] + Array("data".utf8))
        #expect(record.fields["dataBase64"] != nil, "non-UTF-8 data is archived as base64")
        let attributes = try #require(record.attributes)
        #expect(attributes["type"] == "com.example.binary")
        #expect(attributes["subject"] == "Euro € 😀", "percent-encoded header values are decoded")
        #expect(attributes["specversion"] == "1.0")
    }

    @Test func validationHandshakeAnswersTheCodeAndArchivesNothing() throws {
        let server = try PersistorProcess(config: Self.config)
        let client = try server.connect()
        let body =
            #"[{"id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic": "/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject": "","data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent","eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1","dataVersion": "1"}]"#
        try client.send(
            RawHTTPClient.request(
                "POST", "/api/events",
                headers: [
                    ("Content-Type", "application/json"), ("aeg-event-type", "SubscriptionValidation"),
                    ("aeg-subscription-name", "MYSUB"), ("aeg-delivery-count", "0"),
                ], body: body))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("Transfer-Encoding") == nil)
        #expect(response.header("Content-Length") == String(response.body.count))
        let answer = try #require(JSONSerialization.jsonObject(with: Data(response.body)) as? [String: String])
        #expect(answer == ["validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"])
        #expect(try allRecords(server.store).isEmpty, "validation events are not archived")
        #expect(server.log.contains("validationUrl"))
    }

    @Test func optionsHandshakeWithTheHeadersEventGridSends() throws {
        let server = try PersistorProcess(config: Self.config)
        let client = try server.connect()
        try client.send(
            RawHTTPClient.request(
                "OPTIONS", "/api/events",
                headers: [
                    ("WebHook-Request-Origin", "eventgrid.azure.net"), ("WebHook-Request-Rate", "120"),
                ]))
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("WebHook-Allowed-Origin") == "eventgrid.azure.net")
        #expect(response.header("WebHook-Allowed-Rate") != nil)
        #expect(response.header("Allow")?.contains("POST") == true)
        #expect(try allRecords(server.store).isEmpty)
    }

    @Test func invalidJSONFromTheDocsIsQuarantinedAndAcknowledged() throws {
        let server = try PersistorProcess(config: Self.config)
        let client = try server.connect()
        // The CloudEvents dead-letter sample of the Event Grid docs ends with a trailing comma.
        let body =
            #"{"specversion":"1.0","type":"Microsoft.Storage.BlobCreated","source":"/x","id":"9aeb","deadletterreason":"MaxDeliveryAttemptsExceeded","publishtime":"2020-08-13T17:18:14.0265758Z",}"#
        try client.send(
            RawHTTPClient.request("POST", "/api/events", headers: [("Content-Type", "application/cloudevents+json; charset=utf-8")], body: body))
        #expect(try client.readResponse().status == 200)
        let record = try #require(try allRecords(server.store).first)
        #expect(record.source == "unparsed")
        #expect(record.payload == Array(body.utf8))
    }
}

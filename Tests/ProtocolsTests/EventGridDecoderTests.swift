import Foundation
import PersistorCore
import PersistorHTTP
import Testing

@testable import PersistorProtocols

// MARK: - Helpers

private let receivedAt = UTCTime(seconds: 1_795_719_600)

private func request(
    _ body: [UInt8], headers: [(String, String)] = [("Content-Type", "application/json; charset=utf-8")],
    method: String = "POST"
) -> HTTPRequest {
    HTTPRequest(
        head: HTTPRequestHead(
            method: method, target: "/eventgrid", versionMinor: 1,
            headers: HTTPHeaders([("Host", "x")] + headers.map { (name: $0.0, value: $0.1) })),
        body: body)
}

private func request(_ body: String, headers: [(String, String)] = [("Content-Type", "application/json; charset=utf-8")]) -> HTTPRequest {
    request(Array(body.utf8), headers: headers)
}

private func decode(_ request: HTTPRequest, route: String = "events") -> EventGridDecoder.Delivery {
    EventGridDecoder(route: route, allowedOrigins: nil).decode(request, receivedAt: receivedAt)
}

private func meta(_ record: Record, _ key: String) -> MetaValue? { record.meta.first { $0.key == key }?.value }

private func head(_ headers: [(String, String)]) -> HTTPRequestHead {
    HTTPRequestHead(
        method: "OPTIONS", target: "/api/updates", versionMinor: 1,
        headers: HTTPHeaders([("Host", "x")] + headers.map { (name: $0.0, value: $0.1) }))
}

/// Builds a JSON array body from element texts, recording each element's byte range as it goes
/// (independently of the scanner). `gaps[i]` is the whitespace placed around the i-th comma.
private struct BatchBuilder {
    var bytes: [UInt8] = []
    var ranges: [Range<Int>] = []

    init(_ elements: [String], gaps: [String] = [" ", "\n", "\t\r\n  ", ""]) {
        bytes += Array("[".utf8) + Array(gaps[0].utf8)
        for (index, element) in elements.enumerated() {
            if index > 0 {
                let gap = gaps[index % gaps.count]
                bytes += Array(gap.utf8) + Array(",".utf8) + Array(gaps[(index + 1) % gaps.count].utf8)
            }
            let start = bytes.count
            bytes += Array(element.utf8)
            ranges.append(start..<bytes.count)
        }
        bytes += Array("\n]\n".utf8)
    }

    func slice(_ index: Int) -> [UInt8] { Array(bytes[ranges[index]]) }
}

/// Wraps one object text in blank space, returning the body and the object's own range.
private func padded(_ object: String, before: String = "\n  ", after: String = " \r\n") -> ([UInt8], Range<Int>) {
    let start = before.utf8.count
    let body = Array((before + object + after).utf8)
    return (body, start..<start + object.utf8.count)
}

private func expectQuarantine(
    _ delivery: EventGridDecoder.Delivery, body: [UInt8], reasonContains fragment: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(delivery.records.count == 1, sourceLocation: sourceLocation)
    guard let record = delivery.records.first else { return }
    #expect(record.source == .unparsed, sourceLocation: sourceLocation)
    #expect(record.payload == body, "the whole body is kept", sourceLocation: sourceLocation)
    #expect(record.id.hasPrefix("unparsed-") && record.id.count == "unparsed-".count + 64, sourceLocation: sourceLocation)
    let reason = delivery.quarantineReason ?? ""
    #expect(reason.contains(fragment), "reason: \(reason)", sourceLocation: sourceLocation)
    #expect(meta(record, "reason") == .string(reason), sourceLocation: sourceLocation)
    #expect(delivery.validationCode == nil, sourceLocation: sourceLocation)
}

// MARK: - Published vectors (Event Grid schema; docs/development.md#delivery-vectors)

@Suite struct EventGridVectorTests {
    // https://learn.microsoft.com/azure/event-grid/webhook-event-delivery, with the header Event Grid sends.
    @Test func subscriptionValidationEvent() {
        let element = """
            {
                "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
                "topic": "/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
                "subject": "",
                "data": {
                  "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                  "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"
                },
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2022-10-28T04:23:35.1981776Z",
                "metadataVersion": "1",
                "dataVersion": "1"
              }
            """
        let batch = BatchBuilder([element], gaps: ["\n  "])
        let delivery = decode(
            request(
                batch.bytes,
                headers: [
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("aeg-event-type", "SubscriptionValidation"),
                ]))
        #expect(delivery.records.isEmpty, "validation events are never archived")
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.validationCode == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6")
        #expect(
            delivery.validationURL
                == "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"
        )
        #expect(delivery.validationEvents == 1)
        #expect(delivery.deletionEvents == 0)
        #expect(
            EventGridDecoder.validationResponseBody(delivery.validationCode ?? "")
                == Array(#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#.utf8))
    }

    // Microsoft's curl test, no validationUrl, no aeg-event-type header
    // (https://learn.microsoft.com/azure/event-grid/troubleshoot-subscription-validation).
    @Test func curlValidationWithoutURL() {
        let body =
            #"[{"id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic": "/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject": "","data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},"eventType": "Microsoft.EventGrid.SubscriptionValidationEvent","eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1","dataVersion": "1"}]"#
        let delivery = decode(request(body, headers: [("Content-Type", "application/json")]))
        #expect(delivery.records.isEmpty)
        #expect(delivery.validationCode == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6")
        #expect(delivery.validationURL == nil)
        #expect(delivery.validationEvents == 1)
    }

    // https://learn.microsoft.com/azure/event-grid/event-schema (Blob created).
    @Test func blobCreated() {
        let element = """
            {
                "topic": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/xstoretestaccount",
                "subject": "/blobServices/default/containers/oc2d2817345i200097container/blobs/oc2d2817345i20002296blob",
                "eventType": "Microsoft.Storage.BlobCreated",
                "eventTime": "2017-06-26T18:41:00.9584103Z",
                "id": "831e1650-001e-001b-66ab-eeb76e069631",
                "data": {
                  "api": "PutBlockList",
                  "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760",
                  "requestId": "831e1650-001e-001b-66ab-eeb76e000000",
                  "eTag": "0x8D4BCC2E4835CD0",
                  "contentType": "application/octet-stream",
                  "contentLength": 524288,
                  "blobType": "BlockBlob",
                  "url": "https://oc2d2817345i60006.blob.core.windows.net/oc2d2817345i200097container/oc2d2817345i20002296blob",
                  "sequencer": "00000000000004420000000000028963",
                  "storageDiagnostics": {
                    "batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"
                  }
                },
                "dataVersion": "",
                "metadataVersion": "1"
              }
            """
        let batch = BatchBuilder([element], gaps: ["\n  "])
        let delivery = decode(request(batch.bytes))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.source == .eventgrid)
        #expect(record.route == "events")
        #expect(record.receivedAt == receivedAt)
        #expect(record.id == "831e1650-001e-001b-66ab-eeb76e069631")
        #expect(record.eventTime == "2017-06-26T18:41:00.9584103Z")
        #expect(record.payload == batch.slice(0))
        #expect(record.attributes.isEmpty)
        #expect(record.meta.map(\.key) == ["topic", "subject", "eventType", "dataVersion", "metadataVersion"])
        #expect(
            meta(record, "topic")
                == .string("/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/xstoretestaccount"))
        #expect(meta(record, "subject") == .string("/blobServices/default/containers/oc2d2817345i200097container/blobs/oc2d2817345i20002296blob"))
        #expect(meta(record, "eventType") == .string("Microsoft.Storage.BlobCreated"))
        #expect(meta(record, "dataVersion") == .string(""), "empty dataVersion kept as sent")
        #expect(meta(record, "metadataVersion") == .string("1"))
    }

    // The 2017 version of https://learn.microsoft.com/azure/event-grid/event-schema: no dataVersion /
    // metadataVersion.
    @Test func customTopicWithoutVersions() {
        let element = """
            {
                "topic": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.EventGrid/topics/myeventgridtopic",
                "subject": "/myapp/vehicles/motorcycles",
                "id": "b68529f3-68cd-4744-baa4-3c0498ec19e2",
                "eventType": "recordInserted",
                "eventTime": "2017-06-26T18:41:00.9584103Z",
                "data":{
                  "make": "Ducati",
                  "model": "Monster"
                }
              }
            """
        let batch = BatchBuilder([element], gaps: ["\n  "])
        let delivery = decode(request(batch.bytes))
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.id == "b68529f3-68cd-4744-baa4-3c0498ec19e2")
        #expect(record.payload == batch.slice(0))
        #expect(record.meta.map(\.key) == ["topic", "subject", "eventType"])
        #expect(meta(record, "dataVersion") == nil)
        #expect(meta(record, "metadataVersion") == nil)
    }

    // The consumer test payload of https://github.com/Azure/azure-sdk-for-net/tree/main/sdk/eventgrid
    // (ConsumeEventGridSubscriptionDeletedEvent), byte for byte (double spaces, minified).
    @Test func subscriptionDeletedEventIsArchivedAndCounted() {
        let element =
            #"{  "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",  "topic": "/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",  "subject": "",  "data": {    "eventSubscriptionId": "/subscriptions/id/resourceGroups/rg/providers/Microsoft.EventGrid/topics/topic1/providers/Microsoft.EventGrid/eventSubscriptions/eventsubscription1"  },  "eventType": "Microsoft.EventGrid.SubscriptionDeletedEvent",  "eventTime": "2018-01-25T22:12:19.4556811Z",  "metadataVersion": "1",  "dataVersion": "1"}"#
        let body = Array(("[" + element + "]").utf8)
        let delivery = decode(request(body, headers: [("Content-Type", "application/json"), ("aeg-event-type", "SubscriptionDeletion")]))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.deletionEvents == 1)
        #expect(delivery.validationEvents == 0)
        #expect(delivery.records.count == 1)
        #expect(delivery.records[0].payload == Array(body[1..<body.count - 1]))
        #expect(delivery.records[0].id == "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66")
        #expect(meta(delivery.records[0], "eventType") == .string("Microsoft.EventGrid.SubscriptionDeletedEvent"))
        #expect(meta(delivery.records[0], "aegEventType") == .string("SubscriptionDeletion"))
    }

    // The Event Grid dead-letter sample of https://learn.microsoft.com/azure/event-grid/delivery-and-retry
    // as given (a single object, valid JSON).
    @Test func deadLetterSampleIsArchived() {
        let object = """
            {
                "id": "93902694-901e-008f-6f95-7153a806873c",
                "eventTime": "2020-08-13T17:18:13.1647262Z",
                "eventType": "Microsoft.Storage.BlobCreated",
                "dataVersion": "",
                "metadataVersion": "1",
                "topic": "/subscriptions/0000000000-0000-0000-0000-000000000000000/resourceGroups/rgwithoutpolicy/providers/Microsoft.Storage/storageAccounts/myegteststgfoo",
                "subject": "/blobServices/default/containers/deadletter/blobs/myBlobFile.txt",
                "data": {
                    "api": "PutBlob",
                    "clientRequestId": "c0d879ad-88c8-4bbe-8774-d65888dc2038",
                    "requestId": "93902694-901e-008f-6f95-7153a8000000",
                    "eTag": "0x8D83FACDC0C3402",
                    "contentType": "text/plain",
                    "contentLength": 0,
                    "blobType": "BlockBlob",
                    "url": "https://myegteststgfoo.blob.core.windows.net/deadletter/myBlobFile.txt",
                    "sequencer": "00000000000000000000000000015508000000000005101c",
                    "storageDiagnostics": { "batchId": "cfb32f79-3006-0010-0095-711faa000000" }
                },
                "deadLetterReason": "MaxDeliveryAttemptsExceeded",
                "deliveryAttempts": 1,
                "lastDeliveryOutcome": "NotFound",
                "publishTime": "2020-08-13T17:18:14.0265758Z",
                "lastDeliveryAttemptTime": "2020-08-13T17:18:14.0465788Z"
            }
            """
        let (body, range) = padded(object)
        let delivery = decode(request(body))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.source == .eventgrid)
        #expect(record.id == "93902694-901e-008f-6f95-7153a806873c")
        #expect(record.eventTime == "2020-08-13T17:18:13.1647262Z")
        #expect(record.payload == Array(body[range]))
        #expect(meta(record, "dataVersion") == .string(""))
    }

    // The CloudEvents dead-letter sample of https://learn.microsoft.com/azure/event-grid/delivery-and-retry
    // ends with a trailing comma: invalid JSON (docs/development.md#delivery-vectors).
    @Test func cloudEventsDeadLetterSampleWithTrailingCommaIsQuarantined() {
        let body = Array(
            """
            {
                "id": "caee971c-3ca0-4254-8f99-1395b394588e",
                "source": "mysource",
                "dataversion": "1.0",
                "subject": "mySubject",
                "type": "fooEventType",
                "datacontenttype": "application/json",
                "data": {
                    "prop1": "value1",
                    "prop2": 5
                },
                "deadletterreason": "MaxDeliveryAttemptsExceeded",
                "deliveryattempts": 1,
                "lastdeliveryoutcome": "NotFound",
                "publishtime": "2023-06-22T19:38:23.5227611Z",
            }
            """.utf8)
        for contentType in ["application/cloudevents+json; charset=utf-8", "application/json"] {
            let delivery = decode(request(body, headers: [("Content-Type", contentType)]))
            expectQuarantine(delivery, body: body, reasonContains: "trailing comma")
            #expect(meta(delivery.records[0], "contentType") == .string(contentType))
        }
    }

    // google-cloudevents' MessagePublishedData-complex.json (examples/binary/pubsub/ of
    // https://github.com/googleapis/google-cloudevents) misses a comma after publishTime
    // and ends with a trailing comma. As a structured event it is quarantined whole; as the data of
    // a binary-mode event it is just the payload, archived exactly.
    static let invalidComplexSample = """
        {
          "subscription": "projects/test-project/subscriptions/my-subscription",
          "message": {
            "attributes": { "attr1": "attr1-value" },
            "data": "dGVzdCBtZXNzYWdlIDM=",
            "messageId": "message-id",
            "publishTime": "2021-02-05T04:06:14.109Z"
            "orderingKey": "ordering-key",
          }
        }
        """

    @Test func invalidGoogleCloudEventsSampleIsQuarantinedAsStructured() {
        let body = Array(Self.invalidComplexSample.utf8)
        for contentType in ["application/cloudevents+json", "application/json"] {
            expectQuarantine(decode(request(body, headers: [("Content-Type", contentType)])), body: body, reasonContains: "invalid JSON")
        }
        let binary = decode(
            request(
                body,
                headers: [
                    ("Content-Type", "application/json"), ("ce-specversion", "1.0"), ("ce-id", "3103425958877813"),
                    ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
                    ("ce-source", "//pubsub.googleapis.com/projects/test-project/topics/my-topic"),
                ]))
        #expect(binary.quarantineReason == nil)
        #expect(binary.records.map(\.id) == ["3103425958877813"])
        #expect(binary.records.first?.payload == body)
    }
}

// MARK: - CloudEvents vectors

@Suite struct CloudEventsVectorTests {
    static let structured = """
        {
            "specversion": "1.0",
            "type": "Microsoft.Storage.BlobCreated",
            "source": "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.Storage/storageAccounts/{storage-account}",
            "id": "9aeb0fdf-c01e-0131-0922-9eb54906e209",
            "time": "2019-11-18T15:13:39.4589254Z",
            "subject": "blobServices/default/containers/{storage-container}/blobs/{new-file}",
            "data": {
                "api": "PutBlockList",
                "clientRequestId": "4c5dd7fb-2c48-4a27-bb30-5361b5de920a",
                "requestId": "9aeb0fdf-c01e-0131-0922-9eb549000000",
                "eTag": "0x8D76C39E4407333",
                "contentType": "image/png",
                "contentLength": 30699,
                "blobType": "BlockBlob",
                "url": "https://gridtesting.blob.core.windows.net/testcontainer/{new-file}",
                "sequencer": "000000000000000000000000000099240000000000c41c18",
                "storageDiagnostics": {
                    "batchId": "681fe319-3006-00a8-0022-9e7cde000000"
                }
            }
        }
        """

    // https://learn.microsoft.com/azure/event-grid/cloud-event-schema, structured mode.
    @Test func structuredBlobCreated() {
        let (body, range) = padded(Self.structured)
        let delivery = decode(
            request(
                body,
                headers: [
                    ("Content-Type", "application/cloudevents+json; charset=utf-8"),
                    ("aeg-event-type", "Notification"),
                ]))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.source == .cloudevents)
        #expect(record.id == "9aeb0fdf-c01e-0131-0922-9eb54906e209")
        #expect(record.eventTime == "2019-11-18T15:13:39.4589254Z")
        #expect(record.payload == Array(body[range]))
        #expect(record.meta.map(\.key) == ["type", "source", "subject", "specversion", "aegEventType"])
        #expect(meta(record, "type") == .string("Microsoft.Storage.BlobCreated"))
        #expect(
            meta(record, "source")
                == .string(
                    "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.Storage/storageAccounts/{storage-account}"))
        #expect(meta(record, "subject") == .string("blobServices/default/containers/{storage-container}/blobs/{new-file}"))
        #expect(meta(record, "specversion") == .string("1.0"))
    }

    // The 2020 version of the sample carried `"dataschema": "#"`; datacontenttype too.
    @Test func structuredOptionalAttributes() {
        let object = ##"{"specversion":"1.0","type":"t","source":"/s","id":"x1","dataschema":"#","datacontenttype":"application/json","data":{}}"##
        let delivery = decode(request(object, headers: [("Content-Type", "application/cloudevents+json")]))
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.meta.map(\.key) == ["type", "source", "specversion", "datacontenttype", "dataschema"])
        #expect(meta(record, "dataschema") == .string("#"))
        #expect(meta(record, "datacontenttype") == .string("application/json"))
        #expect(record.eventTime == nil)
        #expect(record.payload == Array(object.utf8))
    }

    // The handshake example of https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md.
    @Test func optionsHandshakeVector() {
        let requestHead = head([
            ("WebHook-Request-Origin", "eventemitter.example.com"),
            ("WebHook-Request-Rate", "120"),
            ("WebHook-Request-Callback", "https://example.com/confirm?id=12345&key=...base64..."),
        ])
        let response = EventGridDecoder(route: "events", allowedOrigins: nil).handshake(requestHead)
        #expect(response.status == 200)
        #expect(response.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com")
        #expect(response.headers["WebHook-Allowed-Rate"] == "*", "documented choice: * unless a rate is configured")
        #expect(response.headers["Allow"] == "POST, OPTIONS")
        #expect(response.body.isEmpty)
        #expect(EventGridDecoder.callbackURL(requestHead) == "https://example.com/confirm?id=12345&key=...base64...")

        let configured = EventGridDecoder(route: "events", allowedOrigins: ["EventEmitter.Example.com"], allowedRate: "120")
            .handshake(requestHead)
        #expect(configured.status == 200)
        #expect(configured.headers["WebHook-Allowed-Origin"] == "eventemitter.example.com", "the origin as sent")
        #expect(configured.headers["WebHook-Allowed-Rate"] == "120")
    }

    @Test func handshakeWithoutRequestRateStillGrantsARate() {
        let response = EventGridDecoder(route: "e", allowedOrigins: nil)
            .handshake(head([("webhook-request-origin", "eventgrid.azure.net")]))
        #expect(response.status == 200)
        #expect(response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net")
        #expect(response.headers["WebHook-Allowed-Rate"] == "*")
        #expect(EventGridDecoder.callbackURL(head([("webhook-request-origin", "eventgrid.azure.net")])) == nil)
    }

    @Test func handshakeWildcardOrigin() {
        let response = EventGridDecoder(route: "e", allowedOrigins: ["*"])
            .handshake(head([("WebHook-Request-Origin", "eventgrid.azure.us")]))
        #expect(response.status == 200)
        #expect(response.headers["WebHook-Allowed-Origin"] == "*")
        #expect(response.headers["Allow"] == "POST, OPTIONS")
    }

    @Test func handshakeRejectsOtherOrigins() {
        let response = EventGridDecoder(route: "e", allowedOrigins: ["eventgrid.azure.net"])
            .handshake(head([("WebHook-Request-Origin", "evil.example.com"), ("WebHook-Request-Rate", "120")]))
        #expect(response.status == 403)
        #expect(response.headers["WebHook-Allowed-Origin"] == nil)
        #expect(response.headers["WebHook-Allowed-Rate"] == nil)
        #expect(response.headers["Allow"] == "POST, OPTIONS")
        #expect(String(decoding: response.body, as: UTF8.self).contains("evil.example.com"))

        let none = EventGridDecoder(route: "e", allowedOrigins: []).handshake(head([("WebHook-Request-Origin", "eventgrid.azure.net")]))
        #expect(none.status == 403)
    }

    @Test func handshakeWithoutOriginIs400() {
        let variants: [[(String, String)]] = [[], [("WebHook-Request-Origin", "")], [("WebHook-Request-Rate", "120")]]
        for headers in variants {
            let response = EventGridDecoder(route: "e", allowedOrigins: nil).handshake(head(headers))
            #expect(response.status == 400)
            #expect(String(decoding: response.body, as: UTF8.self).contains("missing WebHook-Request-Origin"))
            #expect(response.headers["Allow"] == "POST, OPTIONS")
            #expect(response.headers["WebHook-Allowed-Origin"] == nil)
        }
    }

    // Binary-mode vector, §3.1.4 of the CloudEvents HTTP binding
    // (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md).
    @Test func binaryModeVector() {
        let body = Array(#"{"hello" : "world", "n": [1, 2]}"#.utf8) + [0x0A]
        let delivery = decode(
            request(
                body,
                headers: [
                    ("ce-specversion", "1.0"),
                    ("ce-type", "com.example.someevent"),
                    ("ce-time", "2018-04-05T03:56:24Z"),
                    ("ce-id", "1234-1234-1234"),
                    ("ce-source", "/mycontext/subcontext"),
                    ("Content-Type", "application/json; charset=utf-8"),
                    ("aeg-delivery-count", "2"),
                ]))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.source == .cloudevents)
        #expect(record.payload == body, "binary mode: the body exactly")
        #expect(record.id == "1234-1234-1234")
        #expect(record.eventTime == "2018-04-05T03:56:24Z")
        #expect(record.attributes.map(\.key) == ["specversion", "type", "time", "id", "source"])
        #expect(record.attribute("source") == "/mycontext/subcontext")
        #expect(record.meta.map(\.key) == ["type", "source", "specversion", "contentType", "deliveryCount"])
        #expect(meta(record, "contentType") == .string("application/json; charset=utf-8"))
        #expect(meta(record, "deliveryCount") == .int(2))
    }

    @Test func binaryModeHeaderNamesAreLowerCasedAndIDIsAssignedWhenMissing() {
        let delivery = decode(
            request(
                [0xFF, 0x00, 0x01],
                headers: [
                    ("CE-SpecVersion", "1.0"), ("Ce-Type", "t"),
                    ("ce-MyExtension", "v"), ("Content-Type", "application/octet-stream"),
                ]))
        #expect(delivery.records.count == 1)
        let record = delivery.records[0]
        #expect(record.payload == [0xFF, 0x00, 0x01])
        #expect(record.attributes.map(\.key) == ["specversion", "type", "myextension"])
        #expect(meta(record, "idAssigned") == .bool(true))
        #expect(record.id.count == 36 && record.id == record.id.lowercased())
        #expect(UUID(uuidString: record.id) != nil)
        #expect(record.eventTime == nil)
    }

    @Test func binaryModeKeepsDisallowedDataContentTypeHeader() {
        let delivery = decode(
            request(
                "hello",
                headers: [
                    ("ce-specversion", "1.0"), ("ce-id", "a"),
                    ("ce-datacontenttype", "text/plain"), ("Content-Type", "text/plain"),
                ]))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1)
        #expect(delivery.records[0].attribute("datacontenttype") == "text/plain")
        #expect(delivery.records[0].payload == Array("hello".utf8))
    }

    @Test func binaryModeEmptyBodyWithoutContentType() {
        let delivery = decode(request([], headers: [("ce-specversion", "1.0"), ("ce-id", "e")]))
        #expect(delivery.records.count == 1)
        #expect(delivery.records[0].payload.isEmpty)
        #expect(delivery.records[0].id == "e")
        #expect(meta(delivery.records[0], "contentType") == nil)
    }

    // Percent-encoding vectors, §3.1.3.2 of the CloudEvents HTTP binding
    // (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md).
    @Test func percentEncodedAttributeValues() {
        let delivery = decode(
            request(
                "{}",
                headers: [
                    ("ce-specversion", "\"1.0\""),
                    ("ce-id", "1"),
                    ("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
                    ("ce-lower", "Euro%20%e2%82%ac%20%f0%9f%98%80"),
                    ("ce-quoted", #""a\"b\\c%25""#),
                    ("ce-plain", "100%25 ok"),
                ]))
        #expect(delivery.quarantineReason == nil)
        let record = delivery.records[0]
        #expect(record.attribute("specversion") == "1.0", "quoted legacy value unescaped")
        #expect(meta(record, "specversion") == .string("1.0"))
        #expect(record.attribute("subject") == "Euro € 😀")
        #expect(meta(record, "subject") == .string("Euro € 😀"))
        #expect(record.attribute("lower") == "Euro € 😀")
        #expect(record.attribute("quoted") == #"a"b\c%"#, "unquoted first, then percent-decoded once")
        #expect(record.attribute("plain") == "100% ok")
    }

    @Test(arguments: [
        ("%C0%A0", "not valid UTF-8"),  // overlong encoding
        ("%ED%A0%80", "not valid UTF-8"),  // surrogate
        ("%E2%82", "not valid UTF-8"),  // truncated sequence
        ("%G1", "invalid percent-encoding"),
        ("abc%2", "invalid percent-encoding"),
        ("%", "invalid percent-encoding"),
        (#""abc\""#, "malformed quoted-string"),
        (#""a"b""#, "malformed quoted-string"),
    ])
    func malformedAttributeValueQuarantinesTheRequest(value: String, fragment: String) {
        let body = Array(#"{"x":1}"#.utf8)
        let delivery = decode(
            request(
                body,
                headers: [
                    ("ce-specversion", "1.0"), ("ce-id", "1"), ("Ce-Source", value),
                    ("Content-Type", "application/json"),
                ]))
        expectQuarantine(delivery, body: body, reasonContains: "Ce-Source")
        #expect(delivery.quarantineReason?.contains(fragment) == true, "\(delivery.quarantineReason ?? "")")
    }

    @Test func headerValueDecoder() throws {
        #expect(try CloudEventsBinding.decodeHeaderValue("Euro%20%E2%82%AC%20%F0%9F%98%80") == "Euro € 😀")
        #expect(try CloudEventsBinding.decodeHeaderValue("\"1.0\"") == "1.0")
        #expect(try CloudEventsBinding.decodeHeaderValue("\"\"") == "")
        #expect(try CloudEventsBinding.decodeHeaderValue("\"") == "\"", "a lone quote is not a quoted-string")
        #expect(try CloudEventsBinding.decodeHeaderValue("%2541") == "%41", "decoded once only")
        // Raw (unescaped) UTF-8 arrives from the HTTP/1 parser as text and is kept; raw bytes that
        // are not UTF-8 arrive as ISO-8859-1 text and are kept as that text.
        #expect(try CloudEventsBinding.decodeHeaderValue("x €") == "x €")
        let rawOverlong = String(String.UnicodeScalarView([0xC0, 0xA0].map { Unicode.Scalar(UInt8($0)) }))
        #expect(try CloudEventsBinding.decodeHeaderValue(rawOverlong) == "\u{C0}\u{A0}")
        #expect(throws: CloudEventsBinding.HeaderValueError.self) { try CloudEventsBinding.decodeHeaderValue("%C0%A0") }
    }
}

// MARK: - Exactness

@Suite struct EventGridExactnessTests {
    static let tricky: [String] = [
        #"{"id":"e-0","eventType":"t","subject":"a]b}c\"d\\e","data":{"s":"]}\"\\","arr":[1,[2,[3,[]]],{"x":"}"}]},"eventTime":"2024-01-01T00:00:00Z"}"#,
        """
        {
          "id" : "e-1",
          "eventType" : "Uni\\u00e9code",
          "subject" : "caf\\u00e9 \\ud83d\\ude00",
          "data" : {
            "raw" : "é😀 — ✓ ]}",
            "nested" : [ [ ], [ { } ], "]", [[[[]]]] ],
            "ключ" : null
          }
        }
        """,
        #"{"id":"e-2","eventType":"t","data":"[{\"not\":\"json\"}]","subject":"\u005d\u007d\""}"#,
        "{\r\n\t\"id\":\t\"e-3\" ,\r\n\t\"eventType\" : \"t\" ,\"data\" : [ ]\r\n}",
        #"{"id":"e-4","eventType":"t","data":{"deep":{"a":{"b":{"c":[{"d":"\ud83d\ude00"}]}}}},"n":-1.5e+10,"b":true,"z":null}"#,
    ]

    @Test func eventGridBatchSlicesAreExact() {
        for gaps in [[""], [" ", "\n", "\t\r\n  ", ""], ["\n\n    "]] {
            let batch = BatchBuilder(Self.tricky, gaps: gaps)
            let delivery = decode(request(batch.bytes))
            #expect(delivery.quarantineReason == nil)
            #expect(delivery.records.count == Self.tricky.count)
            for (index, record) in delivery.records.enumerated() {
                #expect(record.source == .eventgrid)
                #expect(record.id == "e-\(index)")
                #expect(record.payload == batch.slice(index))
                #expect(record.payload == Array(Self.tricky[index].utf8))
            }
            #expect(meta(delivery.records[0], "subject") == .string(#"a]b}c"d\e"#))
            #expect(meta(delivery.records[1], "eventType") == .string("Uniécode"))
            #expect(meta(delivery.records[1], "subject") == .string("café 😀"))
            #expect(meta(delivery.records[2], "subject") == .string(#"]}""#))
        }
    }

    @Test func cloudEventsBatchSlicesAreExact() {
        let events = Self.tricky.map { $0.replacingOccurrences(of: #""eventType""#, with: #""specversion":"1.0","type""#) }
        let batch = BatchBuilder(events)
        for contentType in ["application/cloudevents-batch+json; charset=utf-8", "application/json"] {
            let delivery = decode(request(batch.bytes, headers: [("Content-Type", contentType)]))
            #expect(delivery.quarantineReason == nil)
            #expect(delivery.records.count == events.count)
            for (index, record) in delivery.records.enumerated() {
                #expect(record.source == .cloudevents)
                #expect(record.id == "e-\(index)")
                #expect(record.payload == batch.slice(index))
            }
        }
    }

    @Test func structuredPrettyAndMinified() throws {
        let pretty = CloudEventsVectorTests.structured
        let minified = String(
            decoding: try JSONSerialization.data(
                withJSONObject:
                    JSONSerialization.jsonObject(with: Data(pretty.utf8))), as: UTF8.self)
        #expect(!minified.contains("\n") && minified.count < pretty.count)
        for object in [pretty, minified] {
            let (body, range) = padded(object, before: " \t\n", after: "\n\n")
            let delivery = decode(request(body, headers: [("Content-Type", "application/cloudevents+json")]))
            #expect(delivery.records.count == 1)
            #expect(delivery.records[0].payload == Array(body[range]))
            #expect(delivery.records[0].id == "9aeb0fdf-c01e-0131-0922-9eb54906e209")
        }
    }

    @Test func thousandEventGridEvents() {
        let events = (0..<1000).map { index in
            #"{"id":"id-\#(index)","topic":"/t","subject":"s/\#(index)","eventType":"E","eventTime":"2024-05-01T00:00:00.\#(index)Z","data":{"i":\#(index),"pad":"\#(String(repeating: "x", count: index % 37))"},"dataVersion":"1","metadataVersion":"1"}"#
        }
        let batch = BatchBuilder(events)
        let delivery = decode(request(batch.bytes))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1000)
        #expect(delivery.records.map(\.id) == (0..<1000).map { "id-\($0)" })
        var exact = true
        for (index, record) in delivery.records.enumerated() where record.payload != batch.slice(index) {
            exact = false
        }
        #expect(exact)
        #expect(delivery.records[999].eventTime == "2024-05-01T00:00:00.999Z")
    }

    @Test func thousandCloudEvents() {
        let events = (0..<1000).map { index in
            #"{ "specversion" : "1.0", "id" : "ce-\#(index)", "source" : "/src", "type" : "T", "time" : "2024-05-01T00:00:00Z", "data" : [\#(index), "]"] }"#
        }
        let batch = BatchBuilder(events, gaps: ["\n", "  "])
        let delivery = decode(request(batch.bytes, headers: [("Content-Type", "application/cloudevents-batch+json")]))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == 1000)
        #expect(delivery.records.map(\.id) == (0..<1000).map { "ce-\($0)" })
        #expect(delivery.records.allSatisfy { $0.source == .cloudevents })
        var exact = true
        for (index, record) in delivery.records.enumerated() where record.payload != batch.slice(index) {
            exact = false
        }
        #expect(exact)
    }

    @Test func eventsOverOneMegabyteAreArchived() {
        let big = #"{"id":"big","eventType":"E","data":{"blob":""# + String(repeating: "a", count: 1_100_000) + #""}}"#
        let batch = BatchBuilder([big, #"{"id":"small","eventType":"E"}"#])
        let delivery = decode(request(batch.bytes))
        #expect(delivery.records.count == 2)
        #expect(delivery.records[0].payload.count > 1_048_576)
        #expect(delivery.records[0].payload == batch.slice(0))
        #expect(delivery.records[1].payload == batch.slice(1))
    }
}

// MARK: - Batches, validation and meta

@Suite struct EventGridBatchTests {
    @Test func mixedBatchArchivesAllButTheValidationEvent() {
        let batch = BatchBuilder([
            #"{"id":"a","eventType":"E","data":{}}"#,
            #"{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"CODE-1","validationUrl":"https://x/validate"}}"#,
            #"{"id":"b","eventType":"E","data":{"validationCode":"not this one"}}"#,
        ])
        let delivery = decode(request(batch.bytes))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.map(\.id) == ["a", "b"])
        #expect(delivery.records[0].payload == batch.slice(0))
        #expect(delivery.records[1].payload == batch.slice(2))
        #expect(delivery.validationCode == "CODE-1")
        #expect(delivery.validationURL == "https://x/validate")
        #expect(delivery.validationEvents == 1)
    }

    @Test func singleValidationEventObject() {
        let body = #"{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"c\u00e9"}}"#
        let delivery = decode(request(body))
        #expect(delivery.records.isEmpty)
        #expect(delivery.validationCode == "cé", "escapes in the code are decoded")
    }

    @Test func validationEventWithoutStringCodeQuarantinesTheBody() {
        for data in [#"{"validationUrl":"https://x"}"#, #"{"validationCode":42}"#, #""code""#, "null"] {
            let body = Array(
                #"[{"id":"a","eventType":"E"},{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","data":\#(data)}]"#.utf8)
            let delivery = decode(request(body, headers: [("aeg-event-type", "SubscriptionValidation")]))
            expectQuarantine(delivery, body: body, reasonContains: "validationCode")
        }
        let noData = Array(#"[{"id":"v","eventType":"Microsoft.EventGrid.SubscriptionValidationEvent"}]"#.utf8)
        expectQuarantine(decode(request(noData)), body: noData, reasonContains: "validationCode")
    }

    @Test func validationHeaderWithoutValidationEventIsQuarantined() {
        let body = Array(#"[{"id":"a","eventType":"Microsoft.Storage.BlobCreated","data":{}}]"#.utf8)
        let delivery = decode(request(body, headers: [("Content-Type", "application/json"), ("Aeg-Event-Type", "SubscriptionValidation")]))
        expectQuarantine(delivery, body: body, reasonContains: "SubscriptionValidation")
        let empty = Array("[]".utf8)
        expectQuarantine(
            decode(request(empty, headers: [("aeg-event-type", "subscriptionvalidation")])), body: empty,
            reasonContains: "no Microsoft.EventGrid.SubscriptionValidationEvent")
    }

    @Test func cloudEventsValidationTypeIsAnsweredToo() {
        let body =
            #"{"specversion":"1.0","id":"v","source":"/s","type":"Microsoft.EventGrid.SubscriptionValidationEvent","data":{"validationCode":"CE-CODE"}}"#
        let delivery = decode(request(body, headers: [("Content-Type", "application/cloudevents+json")]))
        #expect(delivery.records.isEmpty)
        #expect(delivery.validationCode == "CE-CODE")
    }

    @Test func eventsWithoutStringIDGetAnAssignedID() {
        let batch = BatchBuilder([#"{"eventType":"E","data":1}"#, #"{"id":7,"eventType":"E"}"#, #"{"id":"x","eventType":"E"}"#])
        let delivery = decode(request(batch.bytes))
        #expect(delivery.records.count == 3)
        for index in 0..<2 {
            let record = delivery.records[index]
            #expect(meta(record, "idAssigned") == .bool(true))
            #expect(UUID(uuidString: record.id) != nil && record.id == record.id.lowercased())
            #expect(record.payload == batch.slice(index))
        }
        #expect(delivery.records[0].id != delivery.records[1].id)
        #expect(meta(delivery.records[2], "idAssigned") == nil)
        #expect(delivery.records[2].id == "x")
    }

    @Test func nonStringFieldsAreLeftOutOfMeta() {
        let body = #"[{"id":"a","eventType":"E","topic":5,"subject":null,"dataVersion":{"v":1},"eventTime":123}]"#
        let record = decode(request(body)).records[0]
        #expect(record.meta.map(\.key) == ["eventType"])
        #expect(record.eventTime == nil)
    }

    @Test func firstDuplicateKeyWins() {
        let body = #"[{"id":"first","id":"second","eventType":"E"}]"#
        #expect(decode(request(body)).records[0].id == "first")
    }

    @Test func aegHeaderMeta() {
        let body = #"[{"id":"a","topic":"/t","eventType":"E","metadataVersion":"1"}]"#
        let delivery = decode(
            request(
                body,
                headers: [
                    ("Content-Type", "application/json"),
                    ("AEG-SUBSCRIPTION-NAME", "SECURE-WEBHOOK"),
                    ("aeg-delivery-count", "0"),
                    ("Aeg-Event-Type", "Notification"),
                    ("aeg-data-version", "1"),
                    ("aeg-metadata-version", "0"),
                    ("aeg-output-event-id", "a"),
                    ("aeg-compatibility-mode-enabled", "false"),
                    ("aeg-unknown", "ignored"),
                ]))
        let record = delivery.records[0]
        #expect(
            record.meta.map(\.key) == [
                "topic", "eventType", "metadataVersion", "subscriptionName", "deliveryCount",
                "aegEventType", "aegDataVersion", "aegMetadataVersion", "outputEventId",
                "compatibilityModeEnabled",
            ])
        #expect(meta(record, "subscriptionName") == .string("SECURE-WEBHOOK"), "kept as sent")
        #expect(meta(record, "deliveryCount") == .int(0))
        #expect(meta(record, "aegEventType") == .string("Notification"))
        #expect(meta(record, "aegMetadataVersion") == .string("0"))
        #expect(meta(record, "compatibilityModeEnabled") == .string("false"))
        #expect(meta(record, "metadataVersion") == .string("1"))
    }

    @Test func aegHeaderMetaOnCloudEventsAndOddDeliveryCount() {
        let body = #"[{"specversion":"1.0","id":"a","source":"/s","type":"T"}]"#
        let record = decode(request(body, headers: [("aeg-delivery-count", "1x"), ("aeg-subscription-name", "sub")])).records[0]
        #expect(record.source == .cloudevents)
        #expect(meta(record, "deliveryCount") == .string("1x"))
        #expect(meta(record, "subscriptionName") == .string("sub"))
    }
}

// MARK: - Detection matrix

@Suite struct EventGridDetectionTests {
    static let egEvent = #"{"id":"g","eventType":"E","data":{"specversion":"inside data does not count"}}"#
    static let ceEvent = #"{"specversion":"1.0","id":"c","source":"/s","type":"T"}"#

    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var contentType: String?
        var extraHeaders: [(String, String)] = []
        var body: String
        var source: RecordSource
        var count: Int
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "EG array, application/json", contentType: "application/json", body: "[\(egEvent),\(egEvent)]", source: .eventgrid, count: 2),
        Case(name: "EG array, no content type", contentType: nil, body: "[\(egEvent)]", source: .eventgrid, count: 1),
        Case(name: "EG array, text/plain", contentType: "text/plain", body: "[\(egEvent)]", source: .eventgrid, count: 1),
        Case(name: "EG single object", contentType: "application/json", body: egEvent, source: .eventgrid, count: 1),
        Case(
            name: "CE array posted as application/json", contentType: "application/json", body: "[\(ceEvent), \(ceEvent)]", source: .cloudevents,
            count: 2),
        Case(
            name: "CE object posted as application/json", contentType: "application/json; charset=utf-8", body: ceEvent, source: .cloudevents,
            count: 1),
        Case(
            name: "object with specversion and eventType", contentType: "application/json", body: #"{"specversion":"1.0","eventType":"E","id":"x"}"#,
            source: .cloudevents, count: 1),
        Case(name: "structured content type", contentType: "application/cloudevents+json", body: ceEvent, source: .cloudevents, count: 1),
        Case(
            name: "structured content type, odd case and params", contentType: "Application/CloudEvents+JSON ; Charset=UTF-8", body: ceEvent,
            source: .cloudevents, count: 1),
        Case(
            name: "structured content type without specversion", contentType: "application/cloudevents+json", body: #"{"id":"c"}"#,
            source: .cloudevents, count: 1),
        Case(
            name: "batch content type", contentType: "application/cloudevents-batch+json", body: "[\(ceEvent),\(ceEvent),\(ceEvent)]",
            source: .cloudevents, count: 3),
        Case(
            name: "batch content type wins over EG-looking elements", contentType: "APPLICATION/CLOUDEVENTS-BATCH+JSON", body: "[\(egEvent)]",
            source: .cloudevents, count: 1),
        Case(
            name: "structured content type wins over ce-specversion", contentType: "application/cloudevents+json",
            extraHeaders: [("ce-specversion", "1.0")], body: ceEvent, source: .cloudevents, count: 1),
        Case(
            name: "ce-specversion header wins over a JSON array body", contentType: "application/json",
            extraHeaders: [("Ce-Specversion", "1.0"), ("ce-id", "bin")], body: "[\(egEvent)]", source: .cloudevents, count: 1),
    ]

    @Test(arguments: cases)
    func detection(_ testCase: Case) {
        var headers: [(String, String)] = testCase.contentType.map { [("Content-Type", $0)] } ?? []
        headers += testCase.extraHeaders
        let delivery = decode(request(testCase.body, headers: headers))
        #expect(delivery.quarantineReason == nil)
        #expect(delivery.records.count == testCase.count)
        #expect(delivery.records.allSatisfy { $0.source == testCase.source })
    }

    @Test func binaryWinsOverJSONSniffing() {
        let body = "[\(Self.egEvent)]"
        let record = decode(request(body, headers: [("Content-Type", "application/json"), ("ce-specversion", "1.0"), ("ce-id", "bin")])).records[0]
        #expect(record.id == "bin")
        #expect(record.payload == Array(body.utf8), "binary mode keeps the whole body")
    }

    @Test func emptyBatches() {
        for contentType in ["application/cloudevents-batch+json", "application/json"] {
            let delivery = decode(request("[ ]", headers: [("Content-Type", contentType)]))
            #expect(delivery.records.isEmpty)
            #expect(delivery.quarantineReason == nil)
            #expect(delivery.validationCode == nil)
        }
    }

    @Test func shapeMismatchesAreQuarantined() {
        let structuredArray = Array("[\(Self.ceEvent)]".utf8)
        expectQuarantine(
            decode(request(structuredArray, headers: [("Content-Type", "application/cloudevents+json")])),
            body: structuredArray, reasonContains: "structured CloudEvent but the body is a JSON array")
        let batchObject = Array(Self.ceEvent.utf8)
        expectQuarantine(
            decode(request(batchObject, headers: [("Content-Type", "application/cloudevents-batch+json")])),
            body: batchObject, reasonContains: "CloudEvents batch but the body is a JSON object")
        let batchOfScalars = Array("[\(Self.ceEvent), 3]".utf8)
        expectQuarantine(
            decode(request(batchOfScalars, headers: [("Content-Type", "application/cloudevents-batch+json")])),
            body: batchOfScalars, reasonContains: "element 1 is not a JSON object")
        let mixed = Array("[\(Self.egEvent), \(Self.ceEvent)]".utf8)
        expectQuarantine(decode(request(mixed)), body: mixed, reasonContains: "mixes CloudEvents and Event Grid")
        let protobuf: [UInt8] = [0x0A, 0x03, 0x31, 0x2E, 0x30]
        expectQuarantine(
            decode(request(protobuf, headers: [("Content-Type", "application/cloudevents+protobuf")])),
            body: protobuf, reasonContains: "invalid JSON (Content-Type application/cloudevents+protobuf)")
    }

    @Test(arguments: [
        ("<html>", "invalid JSON at byte 0: unexpected character"),
        ("not json", "invalid JSON at byte 1: invalid literal"),
        ("[1,2]", "batch element 0 is not a JSON object"),
        (#"[{"id":"a","eventType":"E"}, "x"]"#, "batch element 1 is not a JSON object"),
        ("{}", "neither a CloudEvent (no 'specversion') nor an Event Grid event (no 'eventType')"),
        (#"{"id":"a","type":"T"}"#, "neither a CloudEvent"),
        (#""string""#, "body is a JSON string"),
        ("42", "body is a JSON number"),
        ("null", "body is JSON null"),
        ("", "empty body"),
        ("  \n", "invalid JSON at byte 3: empty input"),
        ("[{\"id\":\"a\"", "unexpected end of input"),
        ("\u{FEFF}[]", "byte order mark"),
    ])
    func invalidBodies(_ text: String, fragment: String) {
        let body = Array(text.utf8)
        let delivery = decode(request(body, headers: [("Content-Type", "application/json")]))
        expectQuarantine(delivery, body: body, reasonContains: fragment)
        #expect(meta(delivery.records[0], "contentType") == .string("application/json"))
        #expect(delivery.records[0].route == "events")
    }

    @Test func invalidUTF8IsQuarantined() {
        let body: [UInt8] = Array(#"[{"id":""#.utf8) + [0xC0, 0xA0] + Array(#"","eventType":"E"}]"#.utf8)
        expectQuarantine(decode(request(body)), body: body, reasonContains: "invalid UTF-8")
    }

    @Test func quarantineIDIsStableAcrossRetries() {
        let first = decode(request("not json")).records[0].id
        let second = decode(request("not json")).records[0].id
        #expect(first == second)
    }
}

// MARK: - Validation response

@Suite struct ValidationResponseTests {
    @Test func escapesAndParsesBack() throws {
        for code in ["512d38b6-c7b8-40c8-89fe-f46f9e9622b6", #"a"b\c"#, "line\nbreak\ttab\u{01}", "é😀", ""] {
            let body = EventGridDecoder.validationResponseBody(code)
            let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: String]
            #expect(object == ["validationResponse": code])
            #expect(String(decoding: body, as: UTF8.self).hasPrefix(#"{"validationResponse":""#))
        }
        #expect(EventGridDecoder.validationResponseBody(#"a"b\c"#) == Array(#"{"validationResponse":"a\"b\\c"}"#.utf8))
    }

    // docs/archive-format.md#records: a repeated ce-* header (in any case) is one attribute, its field
    // lines joined as RFC 9110 §5.3 combines them, then decoded.
    @Test func repeatedBinaryModeHeadersAreOneAttributeWithEveryValue() {
        let delivery = decode(
            request(
                "data",
                headers: [
                    ("Content-Type", "text/plain"), ("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"),
                    ("ce-type", "t"), ("ce-tag", "a%20b"), ("CE-Tag", "c"), ("ce-tag", "%C3%BC"),
                ]))
        #expect(delivery.quarantineReason == nil)
        guard let record = delivery.records.first else { Issue.record("no record"); return }
        #expect(record.attributes.map(\.key) == ["specversion", "id", "source", "type", "tag"])
        #expect(record.attribute("tag") == "a b, c, ü")
    }
}

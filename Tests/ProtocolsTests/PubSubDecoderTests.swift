import Foundation
import PersistorCore
import PersistorHTTP
import Testing

@testable import PersistorProtocols

@Suite struct PubSubDecoderTests {
    let receivedAt = UTCTime(seconds: 1_795_719_600)

    func request(_ body: String, headers: [(String, String)] = [("Content-Type", "application/json")]) -> HTTPRequest {
        HTTPRequest(
            head: HTTPRequestHead(
                method: "POST", target: "/pubsub", versionMinor: 1,
                headers: HTTPHeaders([("Host", "x")] + headers.map { (name: $0.0, value: $0.1) })),
            body: Array(body.utf8))
    }

    func decode(_ request: HTTPRequest, _ delivery: PubSubDecoder.Delivery = .auto) -> Record {
        PubSubDecoder(route: "orders", delivery: delivery).decode(request, receivedAt: receivedAt)
    }

    func meta(_ record: Record, _ key: String) -> MetaValue? { record.meta.first { $0.key == key }?.value }

    // The official example of https://cloud.google.com/pubsub/docs/push.
    @Test func officialWrappedVector() {
        let record = decode(
            request(
                """
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
                """))
        #expect(record.source == .pubsub)
        #expect(record.route == "orders")
        #expect(record.id == "2070443601311540")
        #expect(record.payload == Array("Hello Cloud Pub/Sub! Here is my message!".utf8))
        #expect(record.eventTime == "2021-02-26T19:13:55.749Z")
        #expect(record.attributes.map { [$0.key, $0.value] } == [["key", "value"]])
        #expect(meta(record, "subscription") == .string("projects/myproject/subscriptions/mysubscription"))
        #expect(meta(record, "idAssigned") == nil)
    }

    // All fields (constructed from https://cloud.google.com/pubsub/docs/reference/rest/v1/PubsubMessage).
    @Test func allFieldsVector() {
        let record = decode(
            request(
                """
                {"message":{"attributes":{"Content-Type":"application/json","k":"v"},"data":"eyJzdGF0dXMiOiAiSGVsbG8gdGhlcmUifQ==",
                 "messageId":"2070443601311540","message_id":"2070443601311540","publishTime":"2021-02-26T19:13:55.749123456Z",
                 "publish_time":"2021-02-26T19:13:55.749123456Z","orderingKey":"some-key"},
                 "subscription":"projects/myproject/subscriptions/mysubscription","deliveryAttempt":3}
                """))
        #expect(record.payload == Array(#"{"status": "Hello there"}"#.utf8))
        #expect(record.eventTime == "2021-02-26T19:13:55.749123456Z", "kept as sent")
        #expect(meta(record, "orderingKey") == .string("some-key"))
        #expect(meta(record, "deliveryAttempt") == .int(3))
        #expect(record.attributes.map(\.key) == ["Content-Type", "k"])
    }

    @Test func snakeCaseOnlyIDs() {
        let record = decode(request(#"{"message":{"data":"aGk=","message_id":"7","publish_time":"2021-02-26T19:13:55Z"}}"#))
        #expect(record.id == "7")
        #expect(record.eventTime == "2021-02-26T19:13:55Z")
    }

    @Test func attributesOnlyMessageHasAnEmptyPayload() {
        let record = decode(request(#"{"message":{"attributes":{"a":"b"},"messageId":"9"}}"#))
        #expect(record.payload.isEmpty)
        #expect(record.attributes.count == 1)
    }

    // Google's minimal sample has no messageId (GoogleCloudPlatform/python-docs-samples,
    // appengine/standard_python3/pubsub/sample_message.json).
    @Test func minimalSampleGetsAnAssignedID() {
        let record = decode(request(#"{"message":{"data":"SGVsbG8sIFdvcmxkIQ=="}}"#))
        #expect(record.payload == Array("Hello, World!".utf8))
        #expect(meta(record, "idAssigned") == .bool(true))
        #expect(!record.id.isEmpty)
    }

    @Test func binaryPayloadIsDecodedExactly() {
        let bytes = (0...255).map(UInt8.init)
        let record = decode(request(#"{"message":{"data":"\#(Data(bytes).base64EncodedString())","messageId":"b"}}"#))
        #expect(record.payload == bytes)
    }

    @Test(arguments: [
        (#"{"message":{"data":"%%%","messageId":"1"}}"#, "message.data is not valid base64"),
        (#"{"message":{"data":5,"messageId":"1"}}"#, "message.data is not a string"),
        (#"{"message":{"data":"aGk=","attributes":{"a":1}}}"#, "message.attributes.a is not a string"),
        (#"{"message":{"data":"aGk=","attributes":[]}}"#, "message.attributes is not an object"),
        (#"{"message":{"data":"aGk=","messageId":7}}"#, "message.messageId is not a string"),
        (#"{"message":{"data":"aGk="},"deliveryAttempt":"x"}"#, "deliveryAttempt is not an integer"),
    ])
    func badEnvelopesAreQuarantinedWhole(body: String, reason: String) {
        let record = decode(request(body))
        #expect(record.source == .unparsed)
        #expect(record.payload == Array(body.utf8), "the whole body is kept")
        #expect(record.meta.first?.value == .string(reason))
        #expect(record.id.hasPrefix("unparsed-") && record.id.count == "unparsed-".count + 64)
        #expect(decode(request(body)).id == record.id, "a retry maps to the same id")
    }

    @Test func invalidJSONIsQuarantinedWhenWrappedIsConfigured() {
        let record = decode(request(#"{"message": {"data": "aGk=",}}"#), .wrapped)
        #expect(record.source == .unparsed)
        #expect(meta(record, "reason").map { "\($0)".contains("trailing comma") } == true)
    }

    @Test func nonEnvelopeBodiesAreUnwrappedInAutoMode() {
        for body in ["plain text", #"{"message":{"text":"not an envelope"}}"#, "[1,2]", "{"] {
            let record = decode(request(body, headers: [("Content-Type", "text/plain")]))
            #expect(record.source == .pubsub)
            #expect(record.payload == Array(body.utf8))
            #expect(meta(record, "idAssigned") == .bool(true))
        }
    }

    // Unwrapped with metadata (constructed from https://cloud.google.com/pubsub/docs/payload-unwrapping).
    @Test func unwrappedWithMetadataHeaders() {
        let record = decode(
            request(
                #"{"status": "Hello there"}"#,
                headers: [
                    ("Content-Type", "application/json"),
                    ("x-goog-pubsub-subscription-name", "projects/myproject/subscriptions/mysubscription"),
                    ("X-Goog-PubSub-Message-Id", "2070443601311540"),
                    ("x-goog-pubsub-publish-time", "2021-02-26T19:13:55.749Z"),
                    ("x-goog-pubsub-ordering-key", "some-key"),
                    ("Authorization", "Bearer secret"),
                    ("User-Agent", "CloudPubSub-Google"),
                    ("X-Forwarded-For", "1.2.3.4"),
                    ("traceparent", "00-abc-def-01"),
                    ("Tenant", "acme"),
                ]))
        #expect(record.id == "2070443601311540")
        #expect(record.eventTime == "2021-02-26T19:13:55.749Z")
        #expect(meta(record, "subscription") == .string("projects/myproject/subscriptions/mysubscription"))
        #expect(meta(record, "orderingKey") == .string("some-key"))
        #expect(record.attributes.map { [$0.key, $0.value] } == [["content-type", "application/json"], ["tenant", "acme"]])
        #expect(record.payload == Array(#"{"status": "Hello there"}"#.utf8))
    }

    @Test func forcedUnwrappedKeepsAnEnvelopeShapedBody() {
        let body = #"{"message":{"data":"aGk=","messageId":"1"}}"#
        let record = decode(request(body), .unwrapped)
        #expect(record.payload == Array(body.utf8))
        #expect(meta(record, "idAssigned") == .bool(true))
    }

    // docs/archive-format.md#records: a record never has an attribute or meta key twice.
    @Test func repeatedAttributeNamesInAnEnvelopeAreQuarantinedWithTheBodyExact() {
        let body = #"{"message":{"attributes":{"k":"a","k":"b"},"data":"aGk=","messageId":"7"},"subscription":"s"}"#
        let record = decode(request(body), .wrapped)
        #expect(record.source == .unparsed)
        #expect(record.payload == Array(body.utf8))
        guard case .string(let reason)? = meta(record, "reason") else { Issue.record("no reason"); return }
        #expect(reason.contains("'k' more than once"))
    }

    @Test func repeatedHeadersOfAnUnwrappedPushAreOneKeyWithEveryValue() {
        let record = decode(
            request(
                "x",
                headers: [
                    ("Region", "eu"), ("region", "us"), ("x-goog-pubsub-message-id", "9"),
                    ("x-goog-pubsub-subscription-name", "projects/p/subscriptions/s"), ("x-goog-pubsub-subscription", "other"),
                    ("x-goog-pubsub-extra", "1"), ("X-Goog-PubSub-Extra", "2"),
                    ("x-goog-pubsub-delivery-attempt", "2"), ("x-goog-pubsub-delivery-attempt", "3"),
                ]), .unwrapped)
        #expect(record.attributes.map { [$0.key, $0.value] } == [["region", "eu, us"]])
        #expect(Set(record.meta.map(\.key)).count == record.meta.count, "no meta key twice: \(record.meta.map(\.key))")
        #expect(meta(record, "subscription") == .string("projects/p/subscriptions/s, other"))
        #expect(meta(record, "extra") == .string("1, 2"))
        #expect(meta(record, "deliveryAttempt") == .string("2, 3"))
    }
}

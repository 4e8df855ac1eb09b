import Foundation
import PersistorCore
import PersistorHTTP
import PersistorJSON

/// Turns one Pub/Sub push request into one record (docs/deliveries-and-auth.md#pubsub-push;
/// https://cloud.google.com/pubsub/docs/push, https://cloud.google.com/pubsub/docs/payload-unwrapping).
///
/// - wrapped: the JSON envelope `{"message": {...}, "subscription": ..., "deliveryAttempt": n}`;
///   the payload is the base64-decoded `message.data` (empty when absent).
/// - unwrapped: the body is the payload; `x-goog-pubsub-*` headers carry the metadata and the
///   remaining headers, minus `UnwrappedHeaders.excluded`, are the attributes.
/// In `auto` mode a body is an envelope when it is a JSON object whose `message` object has
/// `data`, `attributes`, `messageId` or `message_id`; anything else is archived as unwrapped.
/// An envelope that cannot be decoded (bad JSON when `wrapped` is forced, bad base64, wrong field
/// types) becomes an `unparsed` record of the whole body.
package struct PubSubDecoder: Sendable {
    /// How the route recognises the push shape (a route's `delivery` key).
    package enum Delivery: String, Sendable, CaseIterable {
        /// Sniff, as described above.
        case auto
        /// Always the JSON push envelope (`{"message": …, "subscription": …}`).
        case wrapped
        /// Always the raw payload ("payload unwrapping"), metadata from headers when present.
        case unwrapped
    }

    package var route: String
    package var delivery: Delivery

    package init(route: String, delivery: Delivery) {
        self.route = route
        self.delivery = delivery
    }

    package func decode(_ request: HTTPRequest, receivedAt: UTCTime) -> Record {
        let headers = request.head.headers
        let hasMetadataHeaders = headers.contains { $0.name.hasCaseInsensitivePrefix("x-goog-pubsub-") }
        switch delivery {
        case .unwrapped:
            return unwrapped(request, receivedAt: receivedAt)
        case .wrapped:
            return wrapped(request, receivedAt: receivedAt, strict: true)
        case .auto:
            if hasMetadataHeaders { return unwrapped(request, receivedAt: receivedAt) }
            return wrapped(request, receivedAt: receivedAt, strict: false)
        }
    }

    private func wrapped(_ request: HTTPRequest, receivedAt: UTCTime, strict: Bool) -> Record {
        let body = request.body
        let contentType = request.head.headers["content-type"]
        func quarantine(_ reason: String) -> Record {
            Quarantine.record(route: route, body: body, receivedAt: receivedAt, reason: reason, contentType: contentType)
        }
        let root: JSONNode
        do {
            root = try JSONScanner.parse(body, materializeDepth: 3)
        } catch {
            return strict
                ? quarantine("invalid JSON at byte \(error.offset): \(error.reason)")
                : unwrapped(request, receivedAt: receivedAt)
        }
        guard let message = root["message"], message.isObject else {
            return strict ? quarantine("envelope has no 'message' object") : unwrapped(request, receivedAt: receivedAt)
        }
        // In auto mode a JSON payload that merely has a "message" object is not an envelope:
        // a real one carries data, attributes or an id.
        if !strict && !Self.envelopeKeys.contains(where: { message[$0] != nil }) {
            return unwrapped(request, receivedAt: receivedAt)
        }

        var payload: [UInt8] = []
        if let data = message["data"] {
            guard let text = data.stringValue else { return quarantine("message.data is not a string") }
            guard let decoded = Data(base64Encoded: text) else { return quarantine("message.data is not valid base64") }
            payload = [UInt8](decoded)
        }
        var attributes: [(key: String, value: String)] = []
        if let node = message["attributes"] {
            switch node.value {
            case .object(let members):
                // A JSON object with a repeated name (RFC 8259 §4: names SHOULD be unique) is not a
                // Pub/Sub attribute map; quarantined, the body is kept exactly instead of one value.
                var names = Set<String>()
                for (key, value) in members {
                    guard let text = value.stringValue else { return quarantine("message.attributes.\(key) is not a string") }
                    guard names.insert(key).inserted else { return quarantine("message.attributes has the key '\(key)' more than once") }
                    attributes.append((key, text))
                }
            case .null: break
            default: return quarantine("message.attributes is not an object")
            }
        }
        func string(_ node: JSONNode?, _ name: String) throws(DecodeFailure) -> String? {
            guard let node else { return nil }
            if case .null = node.value { return nil }
            guard let text = node.stringValue else { throw DecodeFailure(reason: "\(name) is not a string") }
            return text
        }
        do throws(DecodeFailure) {
            // camelCase first, snake_case as the fallback (the push example of
            // https://cloud.google.com/pubsub/docs/push carries both).
            var id = try string(message["messageId"], "message.messageId")
            if id == nil { id = try string(message["message_id"], "message.message_id") }
            var publishTime = try string(message["publishTime"], "message.publishTime")
            if publishTime == nil { publishTime = try string(message["publish_time"], "message.publish_time") }
            var meta: [(key: String, value: MetaValue)] = []
            if let subscription = try string(root["subscription"], "subscription") { meta.append(("subscription", .string(subscription))) }
            if let orderingKey = try string(message["orderingKey"], "message.orderingKey"), !orderingKey.isEmpty {
                meta.append(("orderingKey", .string(orderingKey)))
            }
            if let attempt = root["deliveryAttempt"] {
                guard let n = attempt.intValue else { throw DecodeFailure(reason: "deliveryAttempt is not an integer") }
                meta.append(("deliveryAttempt", .int(n)))
            }
            if id == nil { meta.append(("idAssigned", .bool(true))) }
            return Record(
                id: id ?? Record.assignedID(), source: .pubsub, route: route, receivedAt: receivedAt,
                eventTime: publishTime, attributes: attributes, meta: meta, payload: payload)
        } catch {
            return quarantine(error.reason)
        }
    }

    private func unwrapped(_ request: HTTPRequest, receivedAt: UTCTime) -> Record {
        var attributes: [(key: String, value: String)] = []
        var attributeIndex: [String: Int] = [:]
        var id: String?
        var publishTime: String?
        var meta: [(key: String, value: MetaValue)] = []
        // A repeated field is one attribute (or meta entry), its values joined as RFC 9110 §5.3
        // says, so a record never has a key twice and keeps every value.
        func addAttribute(_ name: String, _ value: String) {
            if let index = attributeIndex[name] {
                attributes[index].value += ", " + value
            } else {
                attributeIndex[name] = attributes.count
                attributes.append((name, value))
            }
        }
        func addMeta(_ key: String, _ value: String) {
            guard let index = meta.firstIndex(where: { $0.key == key }) else {
                meta.append((key, key == "deliveryAttempt" ? Int(value).map(MetaValue.int) ?? .string(value) : .string(value)))
                return
            }
            let previous =
                switch meta[index].value {
                case .string(let text): text
                case .int(let n): String(n)
                case .bool(let b): String(b)
                }
            meta[index].value = .string(previous + ", " + value)
        }
        for (rawName, value) in request.head.headers {
            let name = rawName.lowercased()
            switch name {
            case "x-goog-pubsub-message-id": id = value
            case "x-goog-pubsub-publish-time": publishTime = value
            case "x-goog-pubsub-subscription-name": addMeta("subscription", value)
            case "x-goog-pubsub-ordering-key": addMeta("orderingKey", value)
            case "x-goog-pubsub-delivery-attempt": addMeta("deliveryAttempt", value)
            default:
                if name.hasPrefix("x-goog-pubsub-") {
                    addMeta(String(name.dropFirst("x-goog-pubsub-".count)), value)
                } else if !UnwrappedHeaders.isExcluded(name) {
                    addAttribute(name, value)
                }
            }
        }
        if id == nil { meta.append(("idAssigned", .bool(true))) }
        return Record(
            id: id ?? Record.assignedID(), source: .pubsub, route: route, receivedAt: receivedAt,
            eventTime: publishTime, attributes: attributes, meta: meta, payload: request.body)
    }

    private static let envelopeKeys = ["data", "attributes", "messageId", "message_id"]

    struct DecodeFailure: Error { var reason: String }
}

/// Request headers that are never message attributes of an unwrapped push: transport and
/// hop-by-hop fields, credentials, and proxy and tracing headers added on the way.
package enum UnwrappedHeaders {
    package static let excluded: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
        "te", "trailer", "upgrade", "expect", "authorization", "proxy-authorization", "cookie",
        "user-agent", "accept", "accept-encoding", "from", "via", "forwarded", "x-real-ip",
        "x-cloud-trace-context", "traceparent", "tracestate", "grpc-trace-bin", "x-amzn-trace-id",
        "b3", "x-request-id", "cdn-loop",
    ]
    /// Prefixes of excluded headers (`x-forwarded-for`, `x-b3-traceid`, `x-envoy-…`).
    package static let excludedPrefixes = ["x-forwarded-", "x-b3-", "x-envoy-"]

    package static func isExcluded(_ lowercasedName: String) -> Bool {
        excluded.contains(lowercasedName) || excludedPrefixes.contains { lowercasedName.hasPrefix($0) }
    }
}

import Foundation
import PersistorCore
import PersistorHTTP
import PersistorJSON

/// Turns one Azure Event Grid / CloudEvents 1.0 webhook POST into records
/// (docs/deliveries-and-auth.md#event-grid-and-cloudevents, docs/archive-format.md#records;
/// https://learn.microsoft.com/azure/event-grid/webhook-event-delivery).
///
/// Shape detection, first match wins (media types compared case-insensitively, parameters ignored):
/// 1. `Content-Type: application/cloudevents-batch…` → CloudEvents batch (the body must be an array);
/// 2. `Content-Type: application/cloudevents…` → structured CloudEvent (the body must be an object);
/// 3. a `ce-specversion` header → binary-mode CloudEvent (`CloudEventsBinding.swift`);
/// 4. otherwise the JSON decides: an array whose object elements all carry `specversion` is a
///    CloudEvents batch, an array whose elements carry none is an Event Grid batch (an array mixing
///    both is quarantined; `[]` is an empty Event Grid batch); an object with `specversion` is a
///    structured CloudEvent, else an object with `eventType` is one Event Grid event.
///
/// Every event becomes one record whose payload is the exact bytes of its JSON object as received,
/// sliced from the body by the scanner's byte range (never re-serialised). Elements of an array are
/// archived whatever fields they have (custom input schemas deliver arbitrary objects); only a lone
/// object needs `specversion` or `eventType` to be recognised.
///
/// The body is parsed once. The materialize depth is picked from the first non-blank byte so that
/// each event object and its top-level members are built (top-level strings decoded) while the
/// members of `data` stay `.unmaterialized` (keys and byte ranges only): 2 for an array body
/// (array 0, events 1, fields 2), 1 for an object body. The only values read below `data` are
/// `validationCode` / `validationUrl` of a validation event; their single string tokens are decoded
/// from their ranges.
///
/// Validation events (`Microsoft.EventGrid.SubscriptionValidationEvent`, also accepted as a
/// CloudEvents `type`) are answered, not archived; `SubscriptionDeletedEvent`s are archived and
/// counted. Anything that cannot be decoded becomes a single `unparsed` record of the whole body.
package struct EventGridDecoder: Sendable {
    package var route: String
    /// Origins granted by the OPTIONS handshake; nil grants any origin, `"*"` grants with `*`.
    package var allowedOrigins: [String]?
    /// The `WebHook-Allowed-Rate` to grant; nil grants `*`.
    package var allowedRate: String?

    package init(route: String, allowedOrigins: [String]?, allowedRate: String? = nil) {
        self.route = route
        self.allowedOrigins = allowedOrigins
        self.allowedRate = allowedRate
    }

    /// What to do with one POST.
    package struct Delivery: Sendable {
        /// Records to archive (all-or-none) before answering.
        package var records: [Record]
        /// Set when the delivery contained a SubscriptionValidationEvent: answer 200 with
        /// `{"validationResponse":"<code>"}` after the records are durable.
        package var validationCode: String?
        package var validationURL: String?
        /// Counts for logging: validation events seen (not archived), subscription-deleted events seen (archived).
        package var validationEvents: Int
        package var deletionEvents: Int
        /// Non-nil when the body was quarantined (the single record is `source: .unparsed`); safe to log.
        package var quarantineReason: String?

        package init(
            records: [Record], validationCode: String? = nil, validationURL: String? = nil,
            validationEvents: Int = 0, deletionEvents: Int = 0, quarantineReason: String? = nil
        ) {
            self.records = records
            self.validationCode = validationCode
            self.validationURL = validationURL
            self.validationEvents = validationEvents
            self.deletionEvents = deletionEvents
            self.quarantineReason = quarantineReason
        }
    }

    package static let validationEventType = "Microsoft.EventGrid.SubscriptionValidationEvent"
    package static let deletedEventType = "Microsoft.EventGrid.SubscriptionDeletedEvent"

    /// `aeg-*` delivery headers copied into every record's meta, in this order
    /// (docs/deliveries-and-auth.md#event-grid-delivery-headers).
    static let deliveryHeaders: [(header: String, key: String)] = [
        ("aeg-subscription-name", "subscriptionName"),
        ("aeg-delivery-count", "deliveryCount"),
        ("aeg-event-type", "aegEventType"),
        ("aeg-data-version", "aegDataVersion"),
        ("aeg-metadata-version", "aegMetadataVersion"),
        ("aeg-output-event-id", "outputEventId"),
        ("aeg-compatibility-mode-enabled", "compatibilityModeEnabled"),
    ]

    enum Schema {
        case eventGrid, cloudEvents

        var source: RecordSource { self == .eventGrid ? .eventgrid : .cloudevents }
    }

    package func decode(_ request: HTTPRequest, receivedAt: UTCTime) -> Delivery {
        let headers = request.head.headers
        let body = request.body
        let contentType = headers["content-type"]
        let mediaType = contentType.map(Self.mediaType) ?? ""
        func quarantine(_ reason: String) -> Delivery {
            Self.quarantine(route: route, body: body, receivedAt: receivedAt, reason: reason, contentType: contentType)
        }

        enum Declared { case batch, structured, none }
        let declared: Declared
        if mediaType.hasPrefix("application/cloudevents-batch") {
            declared = .batch
        } else if mediaType.hasPrefix("application/cloudevents") {
            declared = .structured
        } else if headers["ce-specversion"] != nil {
            return binary(request, receivedAt: receivedAt)
        } else {
            declared = .none
        }

        guard !body.isEmpty else { return quarantine("empty body") }
        let root: JSONNode
        do {
            root = try JSONScanner.parse(body, materializeDepth: Self.materializeDepth(for: body))
        } catch {
            let what = declared == .none ? "" : " (Content-Type \(mediaType))"
            return quarantine("invalid JSON\(what) at byte \(error.offset): \(error.reason)")
        }

        let schema: Schema
        let events: [JSONNode]
        switch (declared, root.value) {
        case (.batch, .array(let elements)):
            if let index = elements.firstIndex(where: { !$0.isObject }) {
                return quarantine("CloudEvents batch element \(index) is not a JSON object")
            }
            schema = .cloudEvents
            events = elements
        case (.batch, _):
            return quarantine("Content-Type \(mediaType) announces a CloudEvents batch but the body is \(Self.describe(root)), not an array")
        case (.structured, .object):
            schema = .cloudEvents
            events = [root]
        case (.structured, _):
            return quarantine("Content-Type \(mediaType) announces a structured CloudEvent but the body is \(Self.describe(root)), not an object")
        case (.none, .array(let elements)):
            var withVersion: Int?
            var withoutVersion: Int?
            for (index, element) in elements.enumerated() {
                guard element.isObject else {
                    return quarantine("batch element \(index) is not a JSON object")
                }
                if element["specversion"] != nil {
                    if withVersion == nil { withVersion = index }
                } else if withoutVersion == nil {
                    withoutVersion = index
                }
            }
            if let withVersion, let withoutVersion {
                return quarantine(
                    "batch mixes CloudEvents and Event Grid events: element \(withVersion) has 'specversion', element \(withoutVersion) has none")
            }
            schema = withVersion == nil ? .eventGrid : .cloudEvents
            events = elements
        case (.none, .object):
            if root["specversion"] != nil {
                schema = .cloudEvents
            } else if root["eventType"] != nil {
                schema = .eventGrid
            } else {
                return quarantine("JSON object is neither a CloudEvent (no 'specversion') nor an Event Grid event (no 'eventType')")
            }
            events = [root]
        case (.none, _):
            return quarantine("body is \(Self.describe(root)); expected an array of events or an event object")
        }
        return decodeEvents(
            events, schema: schema, body: body, headers: headers, receivedAt: receivedAt,
            contentType: contentType)
    }

    /// One record per event object, validation events set aside.
    private func decodeEvents(
        _ events: [JSONNode], schema: Schema, body: [UInt8], headers: HTTPHeaders,
        receivedAt: UTCTime, contentType: String?
    ) -> Delivery {
        let headerMeta = Self.headerMeta(headers)
        // Fields read from each event: id, time, data, then the meta fields in meta order.
        let metaKeys =
            schema == .eventGrid
            ? ["topic", "subject", "eventType", "dataVersion", "metadataVersion"]
            : ["type", "source", "subject", "specversion", "datacontenttype", "dataschema"]
        let keys = ["id", schema == .eventGrid ? "eventTime" : "time", "data"] + metaKeys
        let typeSlot = 3 + metaKeys.firstIndex(of: schema == .eventGrid ? "eventType" : "type")!

        var delivery = Delivery(records: [])
        delivery.records.reserveCapacity(events.count)
        var fields: [JSONNode?] = Array(repeating: nil, count: keys.count)
        for (index, event) in events.enumerated() {
            guard case .object(let members) = event.value else { continue }  // checked by the caller
            // One pass over the top-level members; the first occurrence of a key wins (as `node[key]`).
            for slot in fields.indices { fields[slot] = nil }
            for (key, value) in members {
                if let slot = keys.firstIndex(of: key), fields[slot] == nil { fields[slot] = value }
            }
            let id = fields[0]?.stringValue
            let time = fields[1]?.stringValue
            let data = fields[2]
            let type = fields[typeSlot]?.stringValue

            if let type, type.caseInsensitiveEquals(Self.validationEventType) {
                guard let data, let code = Self.string(member: "validationCode", of: data, body: body) else {
                    return Self.quarantine(
                        route: route, body: body, receivedAt: receivedAt,
                        reason: "\(Self.validationEventType) (event \(index)) has no string data.validationCode",
                        contentType: contentType)
                }
                delivery.validationEvents += 1
                if delivery.validationCode == nil {
                    delivery.validationCode = code
                    delivery.validationURL = Self.string(member: "validationUrl", of: data, body: body)
                }
                continue
            }
            if let type, type.caseInsensitiveEquals(Self.deletedEventType) {
                delivery.deletionEvents += 1
            }

            var meta: [(key: String, value: MetaValue)] = []
            meta.reserveCapacity(metaKeys.count + headerMeta.count + 1)
            for (slot, key) in metaKeys.enumerated() {
                if let text = fields[3 + slot]?.stringValue { meta.append((key, .string(text))) }
            }
            meta.append(contentsOf: headerMeta)
            if id == nil { meta.append(("idAssigned", .bool(true))) }
            delivery.records.append(
                Record(
                    id: id ?? Record.assignedID(), source: schema.source, route: route,
                    receivedAt: receivedAt, eventTime: time, meta: meta,
                    payload: Array(body[event.range])))
        }
        if let failure = validationMismatch(headers, delivery: delivery) {
            return Self.quarantine(
                route: route, body: body, receivedAt: receivedAt, reason: failure,
                contentType: contentType)
        }
        return delivery
    }

    /// `aeg-event-type: SubscriptionValidation` promises a validation event; a body without one is
    /// not what Event Grid sends, so it is quarantined rather than archived as notifications.
    func validationMismatch(_ headers: HTTPHeaders, delivery: Delivery) -> String? {
        guard let eventType = headers["aeg-event-type"], eventType.caseInsensitiveEquals("SubscriptionValidation"),
            delivery.validationEvents == 0
        else { return nil }
        return "aeg-event-type is SubscriptionValidation but the body has no \(Self.validationEventType)"
    }

    // MARK: Helpers

    /// The 200 body for a validation code: `{"validationResponse":"<code>"}` (JSON-escaped).
    package static func validationResponseBody(_ code: String) -> [UInt8] {
        var out = Array(#"{"validationResponse":"#.utf8)
        JSONString.append(code, to: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// The `aeg-*` header meta of a delivery (applies to every record of it).
    static func headerMeta(_ headers: HTTPHeaders) -> [(key: String, value: MetaValue)] {
        var meta: [(key: String, value: MetaValue)] = []
        for (header, key) in deliveryHeaders {
            guard let value = headers[header] else { continue }
            if key == "deliveryCount", let count = Int(value) {
                meta.append((key, .int(count)))
            } else {
                meta.append((key, .string(value)))
            }
        }
        return meta
    }

    /// The media type of a Content-Type value: parameters and blanks (SP, HTAB) removed, ASCII
    /// letters lower-cased (media types are ASCII tokens; RFC 9110 §8.3.1).
    static func mediaType(_ contentType: String) -> String {
        let isBlank = { (byte: UInt8) in byte == 0x20 || byte == 0x09 }
        let type = contentType.utf8.prefix { $0 != UInt8(ascii: ";") }
        let trimmed = type.drop(while: isBlank).reversed().drop(while: isBlank).reversed()
        return String(decoding: trimmed.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// 2 for an array body, 1 otherwise (see the type's documentation).
    static func materializeDepth(for body: [UInt8]) -> Int {
        for byte in body {
            switch byte {
            case 0x20, 0x09, 0x0A, 0x0D: continue
            case UInt8(ascii: "["): return 2
            default: return 1
            }
        }
        return 1
    }

    /// The string value of `data.<key>`, decoding the member's token from its range when the
    /// scanner left it unmaterialized (`data` itself always is materialized at the depths of
    /// `materializeDepth(for:)`). nil when absent or not a string.
    static func string(member key: String, of data: JSONNode, body: [UInt8]) -> String? {
        guard let node = data[key] else { return nil }
        switch node.value {
        case .string(let text):
            return text
        case .unmaterialized:
            guard body[node.range.lowerBound] == UInt8(ascii: "\"") else { return nil }
            return (try? JSONScanner.parse(Array(body[node.range]), materializeDepth: 0))?.stringValue
        default:
            return nil
        }
    }

    static func describe(_ node: JSONNode) -> String {
        switch node.value {
        case .object: return "a JSON object"
        case .array: return "a JSON array"
        case .string: return "a JSON string"
        case .number: return "a JSON number"
        case .bool: return "a JSON boolean"
        case .null: return "JSON null"
        case .unmaterialized: return "a JSON value"
        }
    }

    static func quarantine(
        route: String, body: [UInt8], receivedAt: UTCTime, reason: String,
        contentType: String?
    ) -> Delivery {
        Delivery(
            records: [
                Quarantine.record(
                    route: route, body: body, receivedAt: receivedAt, reason: reason,
                    contentType: contentType)
            ],
            quarantineReason: reason)
    }

}

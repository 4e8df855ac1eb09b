/// Where a record came from; `unparsed` is the quarantine for authenticated deliveries that could
/// not be decoded (the payload is then the whole request body).
package enum RecordSource: String, Sendable {
    case pubsub, eventgrid, cloudevents, unparsed
}

/// A JSON scalar in a record's `meta` object.
package enum MetaValue: Sendable, Equatable {
    case string(String)
    case int(Int)
    case bool(Bool)
}

/// One archived message or event: its payload bytes, unaltered, plus delivery metadata.
/// The archive format (docs/archive-format.md#records) is the JSON encoding of this type.
package struct Record: Sendable {
    package var id: String
    package var source: RecordSource
    package var route: String
    package var receivedAt: UTCTime
    /// The sender's event time, kept exactly as sent.
    package var eventTime: String?
    package var attributes: [(key: String, value: String)]
    package var meta: [(key: String, value: MetaValue)]
    package var payload: [UInt8]

    package init(
        id: String, source: RecordSource, route: String, receivedAt: UTCTime,
        eventTime: String? = nil, attributes: [(key: String, value: String)] = [],
        meta: [(key: String, value: MetaValue)] = [], payload: [UInt8]
    ) {
        self.id = id
        self.source = source
        self.route = route
        self.receivedAt = receivedAt
        self.eventTime = eventTime
        self.attributes = attributes
        self.meta = meta
        self.payload = payload
    }

    package func attribute(_ name: String) -> String? {
        attributes.first { $0.key == name }?.value
    }

    /// What an id is unique within, where the delivery says: a CloudEvent's `source`
    /// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md#id: source + id identify
    /// an event), an Event Grid event's `topic`, a Pub/Sub message's
    /// subscription (ids are unique per topic; a push names the subscription, not the topic).
    package var idScope: String? {
        let key: String
        switch source {
        case .cloudevents: key = "source"
        case .eventgrid: key = "topic"
        case .pubsub: key = "subscription"
        case .unparsed: return nil  // the id is the body's digest
        }
        guard case .string(let value)? = meta.first(where: { $0.key == key })?.value else { return nil }
        return value
    }
}

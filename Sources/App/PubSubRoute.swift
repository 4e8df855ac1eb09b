import Logging
import PersistorHTTP
import PersistorProtocols

/// A `kind: pubsub` route: decode the push into a record, archive it, answer 204 once durable.
struct PubSubRoute: Sendable {
    let decoder: PubSubDecoder
    let responder: ArchiveResponder
    let logger: Logger

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let record = decoder.decode(request, receivedAt: .now())
        if record.source == .unparsed, case .string(let reason)? = record.meta.first?.value {
            logger.warning("delivery quarantined as unparsed", metadata: ["route": "\(decoder.route)", "id": "\(record.id)", "cause": "\(reason)"])
        }
        responder.archive([record], answering: HTTPResponse(status: 204), respond: respond)
    }
}

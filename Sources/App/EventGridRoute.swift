import Logging
import PersistorHTTP
import PersistorProtocols

/// A `kind: eventgrid` route: Event Grid and CloudEvents deliveries. Every event of a delivery is
/// archived (all-or-none) before the 200; subscription validation is answered after that, and the
/// CloudEvents OPTIONS handshake stores nothing.
struct EventGridRoute: Sendable {
    let decoder: EventGridDecoder
    let route: String
    let responder: ArchiveResponder
    let logger: Logger

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        if request.head.method == "OPTIONS" {
            if let callback = EventGridDecoder.callbackURL(request.head) {
                logger.notice(
                    "CloudEvents handshake offers a callback URL; granted through headers instead",
                    metadata: ["route": "\(route)", "callback": "\(callback)"])
            }
            respond(decoder.handshake(request.head))
            return
        }
        let delivery = decoder.decode(request, receivedAt: .now())
        if let reason = delivery.quarantineReason, let record = delivery.records.first {
            logger.warning("delivery quarantined as unparsed", metadata: ["route": "\(route)", "id": "\(record.id)", "cause": "\(reason)"])
        }
        if delivery.validationCode != nil {
            logger.notice(
                "Event Grid subscription validation answered",
                metadata: [
                    "route": "\(route)", "validationUrl": "\(delivery.validationURL ?? "-")",
                    "subscription": "\(request.head.headers["aeg-subscription-name"] ?? "-")",
                ])
        }
        if delivery.deletionEvents > 0 {
            logger.notice(
                "Event Grid subscription deleted",
                metadata: ["route": "\(route)", "subscription": "\(request.head.headers["aeg-subscription-name"] ?? "-")"])
        }
        let success: HTTPResponse
        if let code = delivery.validationCode {
            success = HTTPResponse(
                status: 200, headers: HTTPHeaders([("Content-Type", "application/json")]),
                body: EventGridDecoder.validationResponseBody(code))
        } else {
            success = HTTPResponse(status: 200)
        }
        if delivery.records.isEmpty {
            respond(success)
            return
        }
        responder.archive(delivery.records, answering: success, respond: respond)
    }
}

import Logging
import PersistorArchive
import PersistorHTTP
import PersistorProtocols

/// A `kind: pubsub` route: decode the push into a record, archive it, answer 204 once durable.
struct PubSubRoute: Sendable {
    let decoder: PubSubDecoder
    let archiver: RouteArchiver
    let health: StoreHealth
    let logger: Logger

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let record = decoder.decode(request, receivedAt: .now())
        if record.source == .unparsed, case .string(let reason)? = record.meta.first?.value {
            logger.warning("delivery quarantined as unparsed", metadata: ["route": "\(decoder.route)", "id": "\(record.id)", "cause": "\(reason)"])
        }
        let route = decoder.route, id = record.id, logger = self.logger, health = self.health
        archiver.submit([record]) { result in
            switch result {
            case .success:
                health.succeeded()
                respond(HTTPResponse(status: 204))
            case .failure(.store(let error)):
                health.failed(error)
                logger.error("archive write failed", metadata: ["route": "\(route)", "id": "\(id)", "cause": "\(error)"])
                respond(.storeUnavailable)
            case .failure(let overload):
                logger.warning("delivery refused", metadata: ["route": "\(route)", "id": "\(id)", "cause": "\(overload)"])
                respond(.archiveBusy)
            }
        }
    }
}

extension HTTPResponse {
    /// The retryable answer for any failure to store (never 4xx: senders may drop those).
    static let storeUnavailable = HTTPResponse.text(503, "archive store unavailable; retry later",
                                                    headers: HTTPHeaders([("Retry-After", "5")]))
    /// The answer when a route's backlog of not-yet-durable records is full.
    static let archiveBusy = HTTPResponse.text(503, "archive busy; retry later",
                                               headers: HTTPHeaders([("Retry-After", "1")]))
}

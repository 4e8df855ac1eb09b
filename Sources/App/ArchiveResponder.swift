import Logging
import PersistorArchive
import PersistorCore
import PersistorHTTP

/// The answer to a delivery once its records are archived, the same for every route kind: the
/// route's success answer only when every record is durable, otherwise 503 + `Retry-After` (never
/// 4xx: senders may drop those; docs/design.md#durability-rules).
struct ArchiveResponder: Sendable {
    let route: String
    let archiver: RouteArchiver
    let health: StoreHealth
    let logger: Logger

    func archive(_ records: [Record], answering success: HTTPResponse, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let metadata: Logger.Metadata = ["route": "\(route)", "id": "\(records.first?.id ?? "-")", "records": "\(records.count)"]
        let health = self.health, logger = self.logger
        archiver.submit(records) { result in
            switch result {
            case .success:
                health.succeeded()
                respond(success)
            case .failure(.store(let error)):
                health.failed(error)
                logger.error("archive write failed", metadata: metadata.merging(["cause": "\(error)"]) { $1 })
                respond(.storeUnavailable)
            case .failure(let overload):
                logger.warning("delivery refused", metadata: metadata.merging(["cause": "\(overload)"]) { $1 })
                respond(.archiveBusy)
            }
        }
    }
}

extension HTTPResponse {
    /// The retryable answer for any failure to store.
    static let storeUnavailable = HTTPResponse.text(
        503, "archive store unavailable; retry later",
        headers: HTTPHeaders([("Retry-After", "5")]))
    /// The answer when a route's backlog of not-yet-durable records is full.
    static let archiveBusy = HTTPResponse.text(
        503, "archive busy; retry later",
        headers: HTTPHeaders([("Retry-After", "1")]))
}

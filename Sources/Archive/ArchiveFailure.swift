import PersistorCore

/// Why a delivery's records were not archived. Either way nothing of it may be acknowledged.
package enum ArchiveFailure: Error, Sendable, CustomStringConvertible {
    /// The store refused or failed the write.
    case store(BlobStoreError)
    /// The route already holds its limit of records or bytes that are not yet durable (the store
    /// is slower than the senders); the delivery was refused without being queued.
    case backlogFull(records: Int, bytes: Int)

    package var description: String {
        switch self {
        case .store(let error): "\(error)"
        case .backlogFull(let records, let bytes): "archive backlog full (\(records) records, \(bytes) bytes not yet durable)"
        }
    }
}

/// Outcome of archiving one delivery's records.
package typealias ArchiveCompletion = @Sendable (Result<Void, ArchiveFailure>) -> Void

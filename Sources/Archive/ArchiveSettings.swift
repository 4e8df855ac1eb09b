/// How a route's records become objects: the `archive` section of docs/configuration.md#archive.
package struct ArchiveSettings: Sendable, Equatable {
    /// `ndjson`: one gzipped NDJSON object per batch and path. `raw`: one create-only gzipped
    /// object per record (its payload) plus a `.json` sidecar, so a redelivery stores nothing new.
    package enum Format: String, Sendable, Equatable, CaseIterable {
        case ndjson, raw
    }

    /// Which time fills the path template's date tokens.
    package enum Time: String, Sendable, Equatable, CaseIterable {
        /// When Persistor received the delivery.
        case received
        /// The event's own time (publishTime / eventTime / CloudEvents `time`) when it parses as
        /// RFC 3339, else the receive time.
        case event
    }

    /// When an ndjson batch is sealed and how many are written at once (`archive.batch`).
    package struct Batch: Sendable, Equatable {
        /// Most records in one batch (≥ 1).
        package var maxRecords: Int
        /// Most encoded bytes in one batch (≥ 1).
        package var maxBytes: Int
        /// How long a batch may stay open to collect more records (0: write it as soon as fewer
        /// than `concurrentWrites` writes are in progress).
        package var maxDelay: Duration
        /// Batches written at the same time (1: each waits for the previous write to finish).
        /// More hide a remote store's latency, at the price of smaller objects.
        package var concurrentWrites: Int

        package init(maxRecords: Int = 1000, maxBytes: Int = 8 << 20, maxDelay: Duration = .zero, concurrentWrites: Int = 1) {
            self.maxRecords = maxRecords
            self.maxBytes = maxBytes
            self.maxDelay = maxDelay
            self.concurrentWrites = concurrentWrites
        }
    }

    package var format: Format
    package var batch: Batch
    /// The object key's directories.
    package var path: PathTemplate
    package var time: Time
    /// gzip level, 0...9.
    package var gzipLevel: Int
    /// Records not yet durable (open, sealed and being written) beyond which deliveries are refused.
    package var maxPendingRecords: Int
    /// Encoded bytes not yet durable beyond which deliveries are refused.
    package var maxPendingBytes: Int

    /// `{route}/{yyyy}/{MM}/{dd}/{HH}`: one directory per route and hour.
    package static let defaultPath: PathTemplate = {
        do {
            return try PathTemplate("{route}/{yyyy}/{MM}/{dd}/{HH}")
        } catch {
            fatalError("the default path template is invalid: \(error)")
        }
    }()

    package init(
        format: Format = .ndjson, batch: Batch = Batch(), path: PathTemplate = ArchiveSettings.defaultPath,
        time: Time = .received, gzipLevel: Int = 6,
        maxPendingRecords: Int = 100_000, maxPendingBytes: Int = 256 << 20
    ) {
        self.format = format
        self.batch = batch
        self.path = path
        self.time = time
        self.gzipLevel = gzipLevel
        self.maxPendingRecords = maxPendingRecords
        self.maxPendingBytes = maxPendingBytes
    }
}

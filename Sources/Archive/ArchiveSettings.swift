/// How a route's records become objects.
public struct ArchiveSettings: Sendable {
    /// `ndjson`: one gzipped NDJSON object per batch and path. `raw`: one create-only gzipped
    /// object per record (its payload) plus a `.json` sidecar, so a redelivery stores nothing new.
    public enum Format: Sendable {
        case ndjson, raw
    }

    public var format: Format
    public var path: PathTemplate
    /// Use the record's event time (when it parses) for the path instead of the receive time.
    public var useEventTime: Bool
    public var maxRecords: Int
    public var maxBytes: Int
    /// How long a batch may stay open to collect more records (0: write it as soon as fewer than
    /// `concurrentWrites` writes are in progress).
    public var maxDelay: Duration
    /// Batches written at the same time (1: each waits for the previous write to finish). More
    /// hide a remote store's latency, at the price of smaller objects.
    public var concurrentWrites: Int
    public var gzipLevel: Int
    /// Records not yet durable (open, sealed and being written) beyond which deliveries are refused.
    public var maxPendingRecords: Int
    /// Encoded bytes not yet durable beyond which deliveries are refused.
    public var maxPendingBytes: Int

    public init(format: Format = .ndjson, path: PathTemplate, useEventTime: Bool = false, maxRecords: Int = 1000,
                maxBytes: Int = 8 << 20, maxDelay: Duration = .zero, concurrentWrites: Int = 1, gzipLevel: Int = 6,
                maxPendingRecords: Int = 100_000, maxPendingBytes: Int = 256 << 20) {
        self.format = format
        self.path = path
        self.useEventTime = useEventTime
        self.maxRecords = maxRecords
        self.maxBytes = maxBytes
        self.maxDelay = maxDelay
        self.concurrentWrites = concurrentWrites
        self.gzipLevel = gzipLevel
        self.maxPendingRecords = maxPendingRecords
        self.maxPendingBytes = maxPendingBytes
    }
}

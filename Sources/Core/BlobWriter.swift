/// One object to write: the key relative to the store's prefix, the bytes exactly as they must be
/// stored, and the object's content headers and custom metadata.
package struct Blob: Sendable {
    package var key: String
    package var bytes: [UInt8]
    package var contentType: String
    package var contentEncoding: String?
    package var metadata: [String: String]
    /// Write only if no object exists at the key yet; an existing object counts as success.
    package var createOnly: Bool

    package init(
        key: String, bytes: [UInt8], contentType: String, contentEncoding: String? = nil,
        metadata: [String: String] = [:], createOnly: Bool = false
    ) {
        self.key = key
        self.bytes = bytes
        self.contentType = contentType
        self.contentEncoding = contentEncoding
        self.metadata = metadata
        self.createOnly = createOnly
    }
}

/// What a successful put did.
package enum PutOutcome: Sendable, Equatable {
    case created
    /// `createOnly` was set and the object was already there.
    case alreadyExists
}

/// A failed store operation, with enough detail for one log line.
package struct BlobStoreError: Error, Sendable, CustomStringConvertible {
    package var store: String
    package var key: String?
    package var status: Int?
    package var code: String?
    package var message: String
    /// Whether trying again later may succeed (network errors, 5xx, 429); false for e.g. 403.
    package var retryable: Bool

    package init(
        store: String, key: String?, status: Int? = nil, code: String? = nil,
        message: String, retryable: Bool
    ) {
        self.store = store
        self.key = key
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    package var description: String {
        var parts = ["store=\(store)"]
        if let key { parts.append("key=\(key)") }
        if let status { parts.append("status=\(status)") }
        if let code { parts.append("code=\(code)") }
        parts.append(message)
        return parts.joined(separator: " ")
    }
}

/// A durable object store. `put` returns only once the bytes are durable (fsync'd, or the upload
/// completed); a thrown error means nothing may be acknowledged.
package protocol BlobWriter: Sendable {
    /// Names the store in logs, e.g. `file:///var/lib/persistor` or `gs://bucket/prefix`.
    var name: String { get }
    func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome
    /// A cheap check that the store accepts writes, for readiness.
    func probe() async throws(BlobStoreError)
}

extension BlobWriter {
    /// The cloud stores' probe: writes `_persistor/probe` (`ok`, text/plain, overwriting) through
    /// the same signing, retry and durability path as every object (docs/stores.md).
    package func probe() async throws(BlobStoreError) {
        _ = try await put(Blob(key: "_persistor/probe", bytes: Array("ok".utf8), contentType: "text/plain"))
    }
}

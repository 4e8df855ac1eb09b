import Foundation
import PersistorCore

/// Opens the store a URL names (docs/stores.md): `file:///abs/dir`, `/abs/dir` or `./dir` for the local
/// filesystem; `gs://bucket/prefix`, `az://account/container/prefix`, `s3://bucket/prefix` for the
/// clouds, with credentials and endpoints from `environment` by each cloud's own conventions.
package enum StoreFactory {
    package static func open(
        _ url: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        policy: StoreRetryPolicy = StoreRetryPolicy(),
        transport: any StoreHTTPTransport = URLSessionTransport()
    ) throws(BlobStoreError) -> any BlobWriter {
        if url.hasPrefix("file://") {
            let path = String(url.dropFirst("file://".count))
            guard path.hasPrefix("/") else {
                throw BlobStoreError(
                    store: url, key: nil, message: "file:// URLs need an absolute path, e.g. file:///var/lib/persistor", retryable: false)
            }
            return try LocalFileStore(root: path)
        }
        if url.hasPrefix("gs://") {
            return try GCSStore(url: url, environment: environment, policy: policy, transport: transport)
        }
        if url.hasPrefix("az://") {
            return try AzureBlobStore(url: url, environment: environment, policy: policy, transport: transport)
        }
        if url.hasPrefix("s3://") {
            return try S3Store(url: url, environment: environment, policy: policy, transport: transport)
        }
        if let scheme = url.range(of: "://").map({ url[..<$0.lowerBound] }) {
            throw BlobStoreError(
                store: url, key: nil, message: "unsupported store scheme '\(scheme)'; supported: file://, gs://, az://, s3:// or a directory path",
                retryable: false)
        }
        guard !url.isEmpty else { throw BlobStoreError(store: url, key: nil, message: "empty store URL", retryable: false) }
        return try LocalFileStore(root: url)
    }
}

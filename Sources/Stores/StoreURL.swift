/// Opens the store a URL names: `file:///abs/dir`, `/abs/dir` or `./dir` for the local filesystem.
public enum StoreFactory {
    public static func open(_ url: String) throws(BlobStoreError) -> any BlobWriter {
        if url.hasPrefix("file://") {
            let path = String(url.dropFirst("file://".count))
            guard path.hasPrefix("/") else {
                throw BlobStoreError(store: url, key: nil, message: "file:// URLs need an absolute path, e.g. file:///var/lib/persistor", retryable: false)
            }
            return try LocalFileStore(root: path)
        }
        if let scheme = url.range(of: "://").map({ url[..<$0.lowerBound] }) {
            throw BlobStoreError(store: url, key: nil, message: "unsupported store scheme '\(scheme)'; supported: file:// or a directory path", retryable: false)
        }
        guard !url.isEmpty else { throw BlobStoreError(store: url, key: nil, message: "empty store URL", retryable: false) }
        return try LocalFileStore(root: url)
    }
}

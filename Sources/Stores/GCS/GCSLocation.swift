import Foundation
import PersistorCore

/// Where a `gs://` store URL points: the bucket, the object-name prefix, and an optional endpoint.
///
/// `gs://bucket/prefix` writes objects named `prefix/<key>` (just `<key>` without a prefix) to
/// `https://storage.googleapis.com`. The query may name another endpoint with authentication kept,
/// e.g. a Private Service Connect endpoint:
/// `gs://bucket/prefix?endpoint=https://storage-xyz.p.googleapis.com` (scheme and host, optional
/// port, no path). It takes precedence over `STORAGE_EMULATOR_HOST`. Other query keys are refused.
package struct GCSLocation: Sendable, Equatable {
    package var bucket: String
    /// No leading or trailing `/`; empty when objects sit at the top of the bucket.
    package var prefix: String
    /// The `endpoint` query parameter, when given.
    package var endpoint: URL?

    package init(parsing url: String) throws(BlobStoreError) {
        func invalid(_ why: String) -> BlobStoreError {
            BlobStoreError(store: url, key: nil, message: "invalid gs:// URL: \(why)", retryable: false)
        }
        guard url.hasPrefix("gs://") else { throw invalid("it must start with gs://") }
        var rest = url.dropFirst("gs://".count)
        var query: Substring?
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        guard !rest.contains("#") else { throw invalid("a fragment (#) is not allowed") }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        bucket = String(rest[..<slash])
        guard Self.isValidBucketName(bucket) else {
            throw invalid(
                "'\(bucket)' is not a bucket name (3 to 222 characters of a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit)")
        }
        var path = slash < rest.endIndex ? rest[rest.index(after: slash)...] : ""
        while path.hasSuffix("/") { path = path.dropLast() }
        prefix = String(path)
        if !prefix.isEmpty {
            guard !prefix.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) else {
                throw invalid("the prefix '\(prefix)' has an empty path segment")
            }
            guard !prefix.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw invalid("the prefix has a control character")
            }
        }
        endpoint = nil
        for parameter in (query ?? "").split(separator: "&") {
            let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0]).removingPercentEncoding ?? String(pair[0])
            guard name == "endpoint" else { throw invalid("unknown query parameter '\(name)'; the only one supported is endpoint") }
            guard endpoint == nil else { throw invalid("endpoint is given more than once") }
            guard pair.count == 2, let value = String(pair[1]).removingPercentEncoding, !value.isEmpty else {
                throw invalid("endpoint needs a value, e.g. ?endpoint=https://storage-xyz.p.googleapis.com")
            }
            do {
                endpoint = try Self.endpoint(value, named: "endpoint", store: url)
            } catch {
                throw invalid(error.message)
            }
        }
    }

    /// The full object name for a store key: the prefix and the key joined by one `/`.
    package func objectName(for key: String) -> String {
        prefix.isEmpty ? key : prefix + "/" + key
    }

    /// The store's name for logs: the URL without redundant slashes.
    package var name: String {
        var name = "gs://" + bucket
        if !prefix.isEmpty { name += "/" + prefix }
        if let endpoint { name += "?endpoint=" + endpoint.absoluteString }
        return name
    }

    /// Bucket naming rules (https://cloud.google.com/storage/docs/buckets#naming), as far as
    /// characters and length go; the service checks the rest.
    static func isValidBucketName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (3...222).contains(bytes.count) else { return false }
        func isAlphanumeric(_ byte: UInt8) -> Bool { (0x61...0x7A).contains(byte) || (0x30...0x39).contains(byte) }
        guard isAlphanumeric(bytes.first!), isAlphanumeric(bytes.last!) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E }
    }

    /// An endpoint given as `scheme://host[:port]` (or `host:port`, meaning http, as emulators
    /// are named): a trailing `/` is dropped; a path, query, fragment or user name is refused.
    static func endpoint(_ text: String, named what: String, store: String) throws(BlobStoreError) -> URL {
        var value = text.contains("://") ? text : "http://" + text
        while value.hasSuffix("/") { value.removeLast() }
        guard let url = URL(string: value), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty, url.path.isEmpty, url.query == nil, url.fragment == nil, url.user == nil
        else {
            throw BlobStoreError(
                store: store, key: nil,
                message: "\(what) '\(text)' is not an endpoint of the form http(s)://host[:port] (no path)", retryable: false)
        }
        return url
    }
}

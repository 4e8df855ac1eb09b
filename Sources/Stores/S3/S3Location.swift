import Foundation
import PersistorCore

/// Where an `s3://bucket/prefix` store's objects live: bucket, key prefix, region, and the endpoint
/// and addressing style requests use.
///
/// Endpoint (botocore's conventions): `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (an
/// S3-compatible store or an emulator), always addressed path-style (`{endpoint}/{bucket}/{key}`);
/// else AWS itself, virtual-hosted (`https://{bucket}.s3.{region}.amazonaws.com/{key}`) unless the
/// bucket name is not a plain DNS label (dots break TLS on virtual hosts, legacy names with upper
/// case or `_` are not host names), which goes path-style to `https://s3.{region}.amazonaws.com`.
/// Region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
struct S3Location: Sendable, Equatable {
    let bucket: String
    /// The key prefix without leading or trailing `/`; may be empty.
    let prefix: String
    let region: String
    /// `http` or `https`.
    let scheme: String
    /// The `Host` header: the host, with the port unless it is the scheme's default.
    let host: String
    /// The path before the object key, already encoded: `/{bucket}` (path-style, after any path of
    /// the endpoint URL) or empty (virtual-hosted).
    let basePath: String

    /// The store's name in logs, e.g. `s3://bucket/prefix`.
    var storeName: String { prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)" }

    init(url: String, environment: [String: String]) throws(BlobStoreError) {
        func invalid(_ message: String) -> BlobStoreError {
            BlobStoreError(store: url, key: nil, message: message, retryable: false)
        }
        guard url.hasPrefix("s3://") else { throw invalid("an S3 store URL starts with s3://") }
        let rest = url.dropFirst("s3://".count)
        let bucket = String(rest.prefix { $0 != "/" })
        var prefix = rest.dropFirst(bucket.count)
        while prefix.first == "/" { prefix.removeFirst() }
        while prefix.last == "/" { prefix.removeLast() }
        guard !bucket.isEmpty, bucket.utf8.allSatisfy(Self.isBucketCharacter) else {
            throw invalid("the bucket name in s3://bucket/prefix must be non-empty and use only letters, digits, '.', '-' and '_'")
        }
        guard !prefix.contains("//") else { throw invalid("the key prefix must not contain '//'") }
        self.bucket = bucket
        self.prefix = String(prefix)

        func setting(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        region = setting("AWS_REGION") ?? setting("AWS_DEFAULT_REGION") ?? "us-east-1"
        guard region.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || Self.isLowerAlphanumeric($0) }) else {
            throw invalid("the region '\(region)' (AWS_REGION / AWS_DEFAULT_REGION) is not a region name like eu-west-1")
        }
        let encodedBucket = SigV4.uriEncode(bucket)
        if let variable = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].first(where: { setting($0) != nil }) {
            let endpoint = setting(variable)!
            guard let parts = URLComponents(string: endpoint), let scheme = parts.scheme?.lowercased(),
                scheme == "http" || scheme == "https", let hostName = parts.host, !hostName.isEmpty,
                parts.query == nil, parts.fragment == nil, parts.user == nil
            else {
                throw invalid("\(variable)='\(endpoint)' is not an http(s)://host[:port][/path] URL")
            }
            var host = hostName.lowercased()
            if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
            if let port = parts.port, port != (scheme == "https" ? 443 : 80) { host += ":\(port)" }
            var path = parts.percentEncodedPath
            while path.hasSuffix("/") { path.removeLast() }
            self.scheme = scheme
            self.host = host
            basePath = path + "/" + encodedBucket
        } else {
            let domain = region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com"
            scheme = "https"
            if bucket.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || Self.isLowerAlphanumeric($0) }) {
                host = "\(bucket).s3.\(region).\(domain)"
                basePath = ""
            } else {
                host = "s3.\(region).\(domain)"
                basePath = "/" + encodedBucket
            }
        }
    }

    /// The full object key: the prefix and the blob's key joined by one `/`.
    func objectKey(_ key: String) -> String { prefix.isEmpty ? key : prefix + "/" + key }

    /// An object's request path, which is also the canonical URI SigV4 signs (S3 takes the path as
    /// sent, encoded once, never normalised): each key byte outside `A-Za-z0-9-_.~/` as `%XX`, and
    /// `.` / `..` segments as `%2E` / `%2E%2E`, since HTTP clients would otherwise remove them.
    func path(objectKey: String) -> String {
        let segments = objectKey.split(separator: "/", omittingEmptySubsequences: false).map { segment in
            segment == "." || segment == ".."
                ? String(repeating: "%2E", count: segment.count)
                : SigV4.uriEncode(String(segment))
        }
        return basePath + "/" + segments.joined(separator: "/")
    }

    func url(objectKey: String) -> URL {
        URL(string: "\(scheme)://\(host)\(path(objectKey: objectKey))")!
    }

    private static func isBucketCharacter(_ byte: UInt8) -> Bool {
        isLowerAlphanumeric(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
            || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

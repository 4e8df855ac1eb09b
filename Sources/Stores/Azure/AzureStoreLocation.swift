/// What an `az://account/container/prefix[?singlePutLimit=N&blockSize=N]` store URL names.
///
/// The account is 3–24 lower-case letters and digits; the container follows Azure's rules
/// (3–63 characters of `a-z`, `0-9` and single inner `-`). The prefix may be empty or have several
/// segments; a trailing `/` is dropped, an empty segment is an error. Query parameters tune uploads:
/// - `singlePutLimit`: the largest body sent as one Put Blob, in bytes (default 8 MiB, at most 5000 MiB);
/// - `blockSize`: the block size for larger bodies, sent as Put Block + Put Block List
///   (default 4 MiB, at most 4000 MiB).
package struct AzureStoreLocation: Sendable, Equatable {
    package var account: String
    package var container: String
    package var prefix: String
    package var singlePutLimit: Int
    package var blockSize: Int

    package static let defaultSinglePutLimit = 8 << 20
    package static let defaultBlockSize = 4 << 20

    package init(_ url: String) throws(AzureConfigurationError) {
        guard url.hasPrefix("az://") else { throw AzureConfigurationError("an Azure store URL starts with az://") }
        var rest = Substring(url.dropFirst("az://".count))
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let parts = rest.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else {
            throw AzureConfigurationError("expected az://account/container[/prefix]")
        }
        account = parts[0]
        container = parts[1]
        prefix = parts.count > 2 ? parts[2] : ""
        guard (3...24).contains(account.count), account.utf8.allSatisfy({ Self.isLowerAlphanumeric($0) }) else {
            throw AzureConfigurationError("the account name must be 3 to 24 lower-case letters and digits")
        }
        guard (3...63).contains(container.count),
            container.utf8.allSatisfy({ Self.isLowerAlphanumeric($0) || $0 == UInt8(ascii: "-") }),
            !container.hasPrefix("-"), !container.hasSuffix("-"), !container.contains("--")
        else {
            throw AzureConfigurationError("the container name must be 3 to 63 lower-case letters, digits and single inner hyphens")
        }
        guard !prefix.hasPrefix("/"), !prefix.contains("//") else {
            throw AzureConfigurationError("the prefix has an empty path segment")
        }
        singlePutLimit = Self.defaultSinglePutLimit
        blockSize = Self.defaultBlockSize
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let value = parts.count == 2 ? Int(parts[1]) : nil
            switch parts[0] {
            case "singlePutLimit":
                guard let value, (1...(5000 << 20)).contains(value) else {
                    throw AzureConfigurationError("singlePutLimit must be a byte count from 1 to 5000 MiB")
                }
                singlePutLimit = value
            case "blockSize":
                guard let value, (1...(4000 << 20)).contains(value) else {
                    throw AzureConfigurationError("blockSize must be a byte count from 1 to 4000 MiB")
                }
                blockSize = value
            default:
                throw AzureConfigurationError("unknown query parameter '\(parts[0])' (known: singlePutLimit, blockSize)")
            }
        }
    }

    /// The store's name in logs and errors: `az://account/container/prefix`.
    package var name: String { "az://\(account)/\(container)" + (prefix.isEmpty ? "" : "/" + prefix) }

    private static func isLowerAlphanumeric(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }
}

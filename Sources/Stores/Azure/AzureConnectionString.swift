import Foundation

/// An Azure Storage connection string (`AZURE_STORAGE_CONNECTION_STRING`): `Key=Value` pairs
/// separated by `;`, keys case-insensitive, values taken verbatim up to the next `;`.
///
/// Keys used: `AccountName`, `AccountKey`, `BlobEndpoint`, `DefaultEndpointsProtocol`,
/// `EndpointSuffix`, `SharedAccessSignature`, `UseDevelopmentStorage`. The other services'
/// endpoints (`QueueEndpoint`, `TableEndpoint`, `FileEndpoint`, `DfsEndpoint`, and their
/// `…SecondaryEndpoint`s) are ignored; any other key is an error naming it. Errors never quote values.
package struct AzureConnectionString: Sendable, Equatable {
    package var accountName: String?
    /// The account key, base64 (checked when parsed).
    package var accountKey: String?
    /// The blob service endpoint without a trailing slash, e.g. `http://127.0.0.1:10000/devstoreaccount1`.
    package var blobEndpoint: String?
    /// `http` or `https`.
    package var defaultEndpointsProtocol: String?
    package var endpointSuffix: String?
    /// A SAS query string without the leading `?`.
    package var sharedAccessSignature: String?
    package var useDevelopmentStorage = false

    /// The emulator's well-known account (Azurite's and the storage emulator's defaults).
    package static let developmentAccount = "devstoreaccount1"
    package static let developmentKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    package static let developmentEndpoint = "http://127.0.0.1:10000/devstoreaccount1"

    private static let ignoredKeys: Set<String> = [
        "queueendpoint", "tableendpoint", "fileendpoint", "dfsendpoint",
        "blobsecondaryendpoint", "queuesecondaryendpoint", "tablesecondaryendpoint", "filesecondaryendpoint",
        "dfssecondaryendpoint",
    ]

    /// - Throws: a message (no values quoted) when the text is malformed.
    package init(_ text: String) throws(AzureConfigurationError) {
        var seen: Set<String> = []
        for segment in text.split(separator: ";", omittingEmptySubsequences: true) {
            let trimmed = segment.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw AzureConfigurationError("a segment is not Key=Value")
            }
            let key = trimmed[..<equals].trimmingCharacters(in: .whitespaces)
            let value = String(trimmed[trimmed.index(after: equals)...])
            let lower = key.lowercased()
            guard seen.insert(lower).inserted else { throw AzureConfigurationError("\(key) appears twice") }
            guard !value.isEmpty || Self.ignoredKeys.contains(lower) else { throw AzureConfigurationError("\(key) is empty") }
            switch lower {
            case "accountname": accountName = value
            case "accountkey":
                guard Data(base64Encoded: value).map({ !$0.isEmpty }) == true else {
                    throw AzureConfigurationError("AccountKey is not base64")
                }
                accountKey = value
            case "blobendpoint":
                let endpoint = value.hasSuffix("/") ? String(value.dropLast()) : value
                guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""),
                    url.host?.isEmpty == false, url.query == nil
                else {
                    throw AzureConfigurationError("BlobEndpoint must be an http(s) URL without a query")
                }
                blobEndpoint = endpoint
            case "defaultendpointsprotocol":
                guard ["http", "https"].contains(value.lowercased()) else {
                    throw AzureConfigurationError("DefaultEndpointsProtocol must be http or https")
                }
                defaultEndpointsProtocol = value.lowercased()
            case "endpointsuffix": endpointSuffix = value
            case "sharedaccesssignature": sharedAccessSignature = value.hasPrefix("?") ? String(value.dropFirst()) : value
            case "usedevelopmentstorage":
                switch value.lowercased() {
                case "true": useDevelopmentStorage = true
                case "false": useDevelopmentStorage = false
                default: throw AzureConfigurationError("UseDevelopmentStorage must be true or false")
                }
            default:
                guard Self.ignoredKeys.contains(lower) else { throw AzureConfigurationError("unknown key \(key)") }
            }
        }
        if useDevelopmentStorage {
            guard seen == ["usedevelopmentstorage"] else {
                throw AzureConfigurationError("UseDevelopmentStorage=true takes no other keys")
            }
            accountName = Self.developmentAccount
            accountKey = Self.developmentKey
            blobEndpoint = Self.developmentEndpoint
        }
        if accountKey != nil && accountName == nil { throw AzureConfigurationError("AccountKey needs AccountName") }
        if accountKey != nil && sharedAccessSignature != nil {
            throw AzureConfigurationError("give either AccountKey or SharedAccessSignature, not both")
        }
    }

    /// The blob endpoint: `BlobEndpoint`, else `{DefaultEndpointsProtocol}://{account}.blob.{EndpointSuffix}`
    /// (defaults `https` and `core.windows.net`).
    package func endpoint(account: String) -> String {
        blobEndpoint ?? "\(defaultEndpointsProtocol ?? "https")://\(account).blob.\(endpointSuffix ?? "core.windows.net")"
    }
}

/// A configuration mistake in the Azure store's URL or environment.
package struct AzureConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

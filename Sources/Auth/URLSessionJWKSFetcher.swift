import Foundation
import PersistorCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Fetches a JWKS with URLSession (FoundationNetworking on Linux).
///
/// - `https` is required, except for loopback hosts (`127.0.0.1`, `::1`, `localhost`), which may use
///   `http` (tests, local emulators). Production JWKS URLs (Google, Entra) are https.
/// - Only a `200` response is accepted; bodies over `maxBytes` are refused.
/// - Errors describe the URL and status only, never the body.
package struct URLSessionJWKSFetcher: JWKSFetcher {
    package struct FetchError: Error, CustomStringConvertible {
        package var description: String
    }

    private let session: URLSession
    private let maxBytes: Int

    package init(timeout: Duration = .seconds(10), maxBytes: Int = 1024 * 1024) {
        let configuration = URLSessionConfiguration.ephemeral
        let seconds = timeout.timeInterval
        configuration.timeoutIntervalForRequest = seconds
        configuration.timeoutIntervalForResource = seconds
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        self.session = URLSession(configuration: configuration)
        self.maxBytes = maxBytes
    }

    package func fetch(_ url: String) async throws -> (body: [UInt8], maxAge: Duration?) {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), let host = parsed.host else {
            throw FetchError(description: "invalid JWKS URL")
        }
        let loopback = ["127.0.0.1", "::1", "[::1]", "localhost"].contains(host.lowercased())
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw FetchError(description: "JWKS URL must use https")
        }
        var request = URLRequest(url: parsed)
        request.httpMethod = "GET"
        request.setValue("application/json", forHTTPHeaderField: "Accept")
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else {
            throw FetchError(description: "JWKS fetch: not an HTTP response")
        }
        guard http.statusCode == 200 else {
            throw FetchError(description: "JWKS fetch: HTTP \(http.statusCode)")
        }
        guard data.count <= maxBytes else {
            throw FetchError(description: "JWKS fetch: body over \(maxBytes) bytes")
        }
        let maxAge = freshnessLifetime(
            cacheControl: http.value(forHTTPHeaderField: "Cache-Control"),
            age: http.value(forHTTPHeaderField: "Age"))
        return (Array(data), maxAge)
    }
}

import Foundation
import PersistorTestSupport

/// A client for the server under test: real HTTP/1.1 over loopback sockets (`RawHTTPClient`), one
/// connection per request, run on a thread of its own so a test waiting for an answer never
/// holds a thread of the cooperative pool the in-process server's archive needs.
package struct PersistorTestClient: Sendable {
    package let mode: PersistorTestMode
    package let port: Int
    /// The archive directory, when the store is a temporary directory.
    package let storeDirectory: TemporaryDirectory?
    private let logText: @Sendable () -> String

    init(mode: PersistorTestMode, port: Int, storeDirectory: TemporaryDirectory?, log: @escaping @Sendable () -> String) {
        self.mode = mode
        self.port = port
        self.storeDirectory = storeDirectory
        self.logText = log
    }

    /// `http://127.0.0.1:<port>`, for senders that take a URL.
    package var baseURL: String { "http://127.0.0.1:\(port)" }

    /// What the server logged so far: the binary's stdout and stderr; in process, one line per
    /// event at or above `log.level`, `level message key=value…`.
    package var log: String { logText() }

    /// Sends one request on a new connection and returns the response. `Host` and
    /// `Content-Length` are added as `RawHTTPClient.request` adds them.
    package func execute(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: [UInt8] = [], timeout: Double = 10
    ) async throws -> RawHTTPResponse {
        let port = self.port
        return try await offThePool {
            let connection = try RawHTTPClient(port: port, timeout: timeout)
            defer { connection.close() }
            return try connection.perform(method, path, headers: headers, body: body)
        }
    }

    package func execute(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: String, timeout: Double = 10
    ) async throws -> RawHTTPResponse {
        try await execute(method, path, headers: headers, body: Array(body.utf8), timeout: timeout)
    }
}

/// Runs blocking work (sockets, process waits) on a thread of its own; see `PersistorTestClient`.
func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        // A queue of its own is served by a thread of its own, not by the cooperative pool.
        DispatchQueue(label: "persistor-testing.blocking").async {
            continuation.resume(with: Result { try work() })
        }
    }
}

import Foundation
import PersistorCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One HTTP request to a cloud store's REST API. Header names keep the case they are given.
package struct StoreHTTPRequest: Sendable {
    package var method: String
    package var url: URL
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    package init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by case-insensitive name.
    package func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// A store's answer. Header names are lower-cased.
package struct StoreHTTPResponse: Sendable {
    package var status: Int
    package var headers: [String: String]
    package var body: [UInt8]

    package init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    package func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Sends one request and returns the answer, whatever its status; throws only when no answer
/// arrived (connection refused, reset, timed out).
package protocol StoreHTTPTransport: Sendable {
    func send(_ request: StoreHTTPRequest, timeout: Duration) async throws -> StoreHTTPResponse
}

/// The transport on URLSession (FoundationNetworking on Linux): one session, so connections to a
/// store are reused; no cookies, no cache, no redirects followed.
package final class URLSessionTransport: NSObject, StoreHTTPTransport, URLSessionTaskDelegate, @unchecked Sendable {
    private var session: URLSession!

    package override init() {
        super.init()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    package func send(_ request: StoreHTTPRequest, timeout: Duration) async throws -> StoreHTTPResponse {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        // `perform` enforces `timeout`; URLSession's own limit stays above it (FoundationNetworking
        // truncates it to whole seconds, so a sub-second value would fail every request at once).
        urlRequest.timeoutInterval = timeout.timeInterval.rounded(.up) + 1
        // One dictionary assignment keeps the names as given; `addValue` would re-capitalize them
        // (`x-ms-meta-firstReceivedAt` → `X-Ms-Meta-Firstreceivedat`), and Azure stores metadata
        // names as sent. Repeated names are joined with ", ".
        var fields: [String: String] = [:]
        for header in request.headers {
            if let name = fields.keys.first(where: { $0.caseInsensitiveCompare(header.name) == .orderedSame }) {
                fields[name]! += ", " + header.value
            } else {
                fields[header.name] = header.value
            }
        }
        urlRequest.allHTTPHeaderFields = fields
        if !request.body.isEmpty || ["PUT", "POST"].contains(request.method) {
            urlRequest.httpBody = Data(request.body)
        }
        let (data, response) = try await perform(urlRequest, timeout: timeout)
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return StoreHTTPResponse(status: http.statusCode, headers: headers, body: Array(data))
    }

    /// Runs a data task with a hard deadline: when it passes, the caller gets `URLError(.timedOut)`
    /// and the task is cancelled from a Dispatch thread.
    ///
    /// Not `session.data(for:)` inside a cancelled Swift task: in FoundationNetworking that
    /// deadlocks (the task's cancellation handler waits for URLSession's work queue while the work
    /// queue waits for the task's status lock to resume it), which froze every store request once
    /// a slow store made one attempt time out.
    private func perform(_ urlRequest: URLRequest, timeout: Duration) async throws -> (Data, URLResponse) {
        let call = PendingCall()
        return try await withCheckedThrowingContinuation { continuation in
            call.start(continuation)
            let task = session.dataTask(with: urlRequest) { data, response, error in
                if let data, let response {
                    call.finish(.success((data, response)))
                } else {
                    call.finish(.failure(error ?? URLError(.badServerResponse)))
                }
            }
            task.resume()
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout.timeInterval) {
                if call.finish(.failure(URLError(.timedOut))) { task.cancel() }
            }
        }
    }

    /// Redirects are answers in their own right (a store that redirects a PUT is misconfigured).
    package func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}

/// One data task's continuation, resumed by whichever comes first: the answer or the deadline.
private final class PendingCall: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<(Data, URLResponse), any Error>?
    private var finished = false

    func start(_ continuation: CheckedContinuation<(Data, URLResponse), any Error>) {
        lock.withLock { self.continuation = continuation }
    }

    /// Resumes the caller unless that already happened; returns whether this call did it.
    @discardableResult
    func finish(_ result: Result<(Data, URLResponse), any Error>) -> Bool {
        let waiting: CheckedContinuation<(Data, URLResponse), any Error>? = lock.withLock {
            guard !finished else { return nil }
            finished = true
            defer { continuation = nil }
            return continuation
        }
        waiting?.resume(with: result)
        return waiting != nil
    }
}

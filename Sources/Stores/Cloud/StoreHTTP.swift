import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request to a cloud store's REST API. Header names keep the case they are given.
public struct StoreHTTPRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }
}

/// A store's answer. Header names are lower-cased.
public struct StoreHTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: [UInt8]

    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// Sends one request and returns the answer, whatever its status; throws only when no answer
/// arrived (connection refused, reset, timed out).
public protocol StoreHTTPTransport: Sendable {
    func send(_ request: StoreHTTPRequest, timeout: Duration) async throws -> StoreHTTPResponse
}

/// The transport on URLSession (FoundationNetworking on Linux): one session, so connections to a
/// store are reused; no cookies, no cache, no redirects followed.
public final class URLSessionTransport: NSObject, StoreHTTPTransport, URLSessionTaskDelegate, @unchecked Sendable {
    private var session: URLSession!

    public override init() {
        super.init()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    public func send(_ request: StoreHTTPRequest, timeout: Duration) async throws -> StoreHTTPResponse {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        urlRequest.timeoutInterval = max(0.001, Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        for header in request.headers {
            urlRequest.addValue(header.value, forHTTPHeaderField: header.name)
        }
        if !request.body.isEmpty || ["PUT", "POST"].contains(request.method) {
            urlRequest.httpBody = Data(request.body)
        }
        let (data, response) = try await withDeadline(timeout) { [session, urlRequest] in
            try await session!.data(for: urlRequest)
        }
        guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return StoreHTTPResponse(status: http.statusCode, headers: headers, body: Array(data))
    }

    /// Redirects are answers in their own right (a store that redirects a PUT is misconfigured).
    public func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                           newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        completionHandler(nil)
    }
}

/// Runs `operation`, throwing `URLError(.timedOut)` if it has not finished after `timeout`.
///
/// On timeout (or when the caller is cancelled) the operation is cancelled but not waited for:
/// FoundationNetworking's `data(for:)` does not always return once cancelled, and the deadline
/// must hold regardless.
func withDeadline<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation,
                       work: Task {
                           do { race.finish(.success(try await operation())) } catch { race.finish(.failure(error)) }
                       },
                       timer: Task {
                           guard (try? await Task.sleep(for: timeout)) != nil else { return }
                           race.finish(.failure(URLError(.timedOut)))
                       })
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The first of an operation's result, its deadline and its caller's cancellation resumes the
/// caller; both tasks are then cancelled.
private final class DeadlineRace<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var tasks: [Task<Void, Never>] = []
    private var outcome: Result<T, any Error>?

    func start(_ continuation: CheckedContinuation<T, any Error>, work: Task<Void, Never>, timer: Task<Void, Never>) {
        let early: Result<T, any Error>? = lock.withLock {
            tasks = [work, timer]
            if outcome == nil { self.continuation = continuation }
            return outcome
        }
        if let early {
            work.cancel()
            timer.cancel()
            continuation.resume(with: early)
        }
    }

    func finish(_ result: Result<T, any Error>) {
        let (waiting, tasks): (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) = lock.withLock {
            guard outcome == nil else { return (nil, []) }
            outcome = result
            defer { continuation = nil }
            return (continuation, self.tasks)
        }
        for task in tasks { task.cancel() }
        waiting?.resume(with: result)
    }
}

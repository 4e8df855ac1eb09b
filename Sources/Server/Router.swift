/// Exact-path routing with 404 for unknown paths and 405 (with `Allow`) for unknown methods.
/// `HEAD` is accepted wherever `GET` is.
package struct Router: HTTPService {
    package typealias Handler = @Sendable (HTTPRequest, @escaping @Sendable (HTTPResponse) -> Void) -> Void
    /// Decides from the head alone whether the request may send its body (see `HTTPService.check`).
    package typealias Admission = @Sendable (HTTPRequestHead, @escaping @Sendable (HTTPResponse?) -> Void) -> Void

    package struct Route: Sendable {
        package var methods: [String]
        package var maxBodyBytes: Int?
        /// Runs after the path, method and length checks, e.g. authentication.
        package var admission: Admission?
        package var handler: Handler

        package init(
            methods: [String], maxBodyBytes: Int? = nil, admission: Admission? = nil,
            handler: @escaping Handler
        ) {
            self.methods = methods
            self.maxBodyBytes = maxBodyBytes
            self.admission = admission
            self.handler = handler
        }
    }

    private var routes: [Substring: Route] = [:]

    package init() {}

    package mutating func add(_ path: String, _ route: Route) {
        routes[Substring(path)] = route
    }

    package func check(_ head: HTTPRequestHead, admit: @escaping @Sendable (HTTPResponse?) -> Void) {
        guard let route = routes[head.path] else {
            admit(.text(404, "no route for this path"))
            return
        }
        if let refusal = Self.refusal(head, by: route) {
            admit(refusal)
        } else if let admission = route.admission {
            admission(head, admit)
        } else {
            admit(nil)
        }
    }

    /// The answer to a head the route cannot take (method, announced length), if any.
    private static func refusal(_ head: HTTPRequestHead, by route: Route) -> HTTPResponse? {
        let method = head.method == "HEAD" && route.methods.contains("GET") ? "GET" : head.method
        guard route.methods.contains(method) else {
            var allowed = route.methods
            if allowed.contains("GET") { allowed.append("HEAD") }
            var headers = HTTPHeaders()
            headers.add("Allow", allowed.joined(separator: ", "))
            return .text(405, "method \(head.method) not allowed here", headers: headers)
        }
        if let limit = route.maxBodyBytes, let length = head.headers["content-length"].flatMap(Int.init), length > limit {
            return .bodyTooLarge(limit: limit)
        }
        return nil
    }

    package func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        guard let route = routes[request.head.path] else {
            respond(.text(404, "no route for this path"))
            return
        }
        if let limit = route.maxBodyBytes, request.body.count > limit {
            respond(.bodyTooLarge(limit: limit))
            return
        }
        route.handler(request, respond)
    }
}

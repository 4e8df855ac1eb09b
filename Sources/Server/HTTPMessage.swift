import Foundation

/// Header fields in the order received. Names keep their original case; lookups ignore case.
package struct HTTPHeaders: Sendable, Sequence {
    package private(set) var fields: [(name: String, value: String)]

    package init(_ fields: [(name: String, value: String)] = []) {
        self.fields = fields
    }

    /// The first value of the named field, if any.
    package subscript(name: String) -> String? {
        for field in fields where field.name.caseInsensitiveEquals(name) { return field.value }
        return nil
    }

    /// Every value of the named field, in order.
    package func values(for name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveEquals(name) }.map(\.value)
    }

    package mutating func add(_ name: String, _ value: String) {
        fields.append((name, value))
    }

    package func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }
}

/// A parsed HTTP/1.x request line and header block.
package struct HTTPRequestHead: Sendable {
    package var method: String
    /// The request target exactly as sent (origin form: path plus optional `?query`).
    package var target: String
    package var versionMinor: Int
    package var headers: HTTPHeaders

    package init(method: String, target: String, versionMinor: Int, headers: HTTPHeaders) {
        self.method = method
        self.target = target
        self.versionMinor = versionMinor
        self.headers = headers
    }

    /// The target in origin form: an absolute-form target (`http://host/p?q`, RFC 9112 §3.2.2)
    /// without its scheme and authority.
    private var originForm: Substring {
        guard target.hasPrefix("http://") || target.hasPrefix("https://"),
            let schemeEnd = target.range(of: "://")
        else { return target[...] }
        let authority = target[schemeEnd.upperBound...]
        guard let start = authority.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return authority[start] == "?" ? "/" + authority[start...] : authority[start...]
    }

    /// The target's path, up to `?`.
    package var path: Substring {
        // Origin form (every request but a proxy's) needs no conversion; `?` is found in the bytes.
        let form = target.utf8.first == UInt8(ascii: "/") ? target[...] : originForm
        return form.utf8.firstIndex(of: UInt8(ascii: "?")).map { form[..<$0] } ?? form
    }

    /// The part after `?`, if any.
    package var query: Substring? {
        let target = originForm
        return target.utf8.firstIndex(of: UInt8(ascii: "?")).map { target[target.utf8.index(after: $0)...] }
    }

    /// Whether the connection may stay open after this request (HTTP/1.1 default, `Connection` tokens).
    package var keepAlive: Bool {
        let tokens = headers.values(for: "connection").flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if tokens.contains("close") { return false }
        return versionMinor >= 1 || tokens.contains("keep-alive")
    }

    /// Whether the client waits for `100 Continue` before sending the body.
    package var expectsContinue: Bool {
        versionMinor >= 1 && headers["expect"].map { $0.caseInsensitiveEquals("100-continue") } == true
    }
}

/// A complete request: head plus the whole body (decoded from chunked framing when needed).
package struct HTTPRequest: Sendable {
    package var head: HTTPRequestHead
    package var body: [UInt8]

    package init(head: HTTPRequestHead, body: [UInt8]) {
        self.head = head
        self.body = body
    }
}

/// A response. `Date`, `Content-Length` and `Connection` are added by the server.
package struct HTTPResponse: Sendable {
    package var status: Int
    package var headers: HTTPHeaders
    package var body: [UInt8]

    package init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A short plain-text answer, the usual shape for errors.
    package static func text(_ status: Int, _ message: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var headers = headers
        headers.add("Content-Type", "text/plain; charset=utf-8")
        return HTTPResponse(status: status, headers: headers, body: Array((message + "\n").utf8))
    }

    /// The answer to a request body over `limit` bytes (RFC 9110 §15.5.14).
    static func bodyTooLarge(limit: Int) -> HTTPResponse {
        .text(413, "request body too large (limit \(limit) bytes)")
    }
}

extension StringProtocol {
    /// ASCII case-insensitive equality, as HTTP field names and tokens need.
    package func caseInsensitiveEquals(_ other: some StringProtocol) -> Bool {
        utf8.count == other.utf8.count && asciiCaseInsensitiveMatch(utf8, other.utf8)
    }

    /// ASCII case-insensitive `hasPrefix`.
    package func hasCaseInsensitivePrefix(_ prefix: some StringProtocol) -> Bool {
        utf8.count >= prefix.utf8.count && asciiCaseInsensitiveMatch(utf8, prefix.utf8)
    }
}

/// Whether `a` starts with `b`, ignoring the case of ASCII letters (`a` is at least as long).
private func asciiCaseInsensitiveMatch(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    func match(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<b.count where a[i] != b[i] {
            let x = a[i] | 0x20
            guard x == b[i] | 0x20, x >= 0x61, x <= 0x7A else { return false }
        }
        return true
    }
    if let result = a.withContiguousStorageIfAvailable({ a in b.withContiguousStorageIfAvailable { b in match(a, b) } }),
        let result
    {
        return result
    }
    return Array(a).withUnsafeBufferPointer { a in Array(b).withUnsafeBufferPointer { b in match(a, b) } }
}

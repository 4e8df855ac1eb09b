import PersistorCore

#if canImport(Glibc)
    import Glibc
#endif

/// Serialises responses: status line, the handler's headers, then `Date`, `Content-Length` and
/// `Connection` as the server decides them.
struct HTTPResponseEncoder {
    private var cachedSecond: Int = -1
    private var cachedDate: [UInt8] = []

    /// `Date: …\r\n` for the current second.
    mutating func dateLine() -> [UInt8] {
        let now = time(nil)
        if now != cachedSecond {
            cachedSecond = now
            cachedDate = Array(("Date: " + Self.httpDate(now) + "\r\n").utf8)
        }
        return cachedDate
    }

    mutating func encode(_ response: HTTPResponse, headRequest: Bool, keepAlive: Bool, http10: Bool, into out: inout [UInt8]) {
        out.append(contentsOf: Self.statusLine(response.status))
        for (name, value) in response.headers {
            out.append(contentsOf: name.utf8)
            out.append(0x3A)
            out.append(0x20)
            out.append(contentsOf: value.utf8)
            out.append(0x0D)
            out.append(0x0A)
        }
        out.append(contentsOf: dateLine())
        let bodyless = response.status == 204 || response.status == 304 || response.status < 200
        if !bodyless {
            out.append(contentsOf: "Content-Length: ".utf8)
            Self.appendDecimal(response.body.count, to: &out)
            out.append(0x0D)
            out.append(0x0A)
        }
        if !keepAlive {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if http10 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(0x0D)
        out.append(0x0A)
        if !headRequest && !bodyless { out.append(contentsOf: response.body) }
    }

    /// `HTTP/1.1 {status} {reason}\r\n`, built once per status code in use.
    private static let statusLines: [Int: [UInt8]] = Dictionary(
        uniqueKeysWithValues: knownStatuses.map {
            ($0, Array("HTTP/1.1 \($0) \(reason($0))\r\n".utf8))
        })

    private static func statusLine(_ status: Int) -> [UInt8] {
        statusLines[status] ?? Array("HTTP/1.1 \(status) \(reason(status))\r\n".utf8)
    }

    private static func appendDecimal(_ value: Int, to out: inout [UInt8]) {
        if value >= 10 { appendDecimal(value / 10, to: &out) }
        out.append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    static func httpDate(_ t: time_t) -> String {
        UTCTime(seconds: Int64(t)).httpDate
    }

    private static let knownStatuses = [
        100, 101, 200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 411, 413, 415,
        429, 431, 500, 501, 503, 505,
    ]

    static func reason(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }
}

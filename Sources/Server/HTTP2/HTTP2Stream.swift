import CNghttp2

/// One request stream of an HTTP/2 connection, from its HEADERS until nghttp2 closes it.
struct HTTP2Stream {
    enum Phase {
        /// HEADERS (and CONTINUATION) still arriving.
        case headers
        /// The service is checking the head (e.g. authentication); DATA is held, its stream
        /// window not credited, so the client can send no more than the initial window.
        case admitting
        /// The head was accepted; DATA may follow.
        case body
        /// The request is with the service; its answer is awaited.
        case service
        /// A response was submitted; anything the client still sends is discarded.
        case answered
    }

    var phase = Phase.headers
    /// The client has ended its side of the stream (END_STREAM).
    var requestEnded = false
    /// When the stream began, then when its body last made progress, then when its response
    /// last made progress (for the timeouts).
    var progressAt: MonotonicTime
    var method = ""
    var path = ""
    var authority: String?
    var fields: [(name: String, value: String)] = []
    /// Header list size as RFC 9113 §6.5.2 counts it (name + value + 32 per field).
    var headerListSize = 0
    var fieldCount = 0
    /// Why the head is refused (431) once it is complete.
    var headError: HTTPParseError?
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    /// Request body bytes received and not yet answered (the connection's body budget counts them).
    var heldBytes = 0
    /// Body bytes received while `admitting`, whose stream-window credit waits for the verdict.
    var uncreditedBytes = 0
    /// The response body being sent, and how much of it nghttp2 has taken.
    var responseBody: [UInt8] = []
    var responseOffset = 0

    init(now: MonotonicTime) {
        progressAt = now
    }

    /// Takes one field of the request's header block; pseudo-header fields fill the request line.
    mutating func addField(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>, limit: Int) {
        headerListSize += name.count + value.count + 32
        fieldCount += 1
        if headError == nil {
            if headerListSize > limit {
                headError = .headerTooLarge
            } else if fieldCount > HTTPRequestParser.maxFieldCount {
                headError = .tooManyFields
            }
        }
        guard headError == nil else {
            fields = []
            return
        }
        let nameText = String(decoding: name, as: UTF8.self)
        let valueText = decodeFieldValue(value)
        // nghttp2 has checked the pseudo-header fields (RFC 9113 §8.3): known names, each once, first.
        switch nameText {
        case ":method": method = valueText
        case ":path": path = valueText
        case ":authority": authority = valueText
        case ":scheme", ":protocol": break
        default: fields.append((nameText, valueText))
        }
    }

    /// The head as the HTTP/1.1 path produces it: `:authority` becomes `host` (ahead of a `host`
    /// field the client may also have sent, which it replaces), and the version is 1.1.
    mutating func makeHead() -> HTTPRequestHead {
        var headers = HTTPHeaders()
        if let authority {
            headers.add("host", authority)
            for field in fields where field.name != "host" { headers.add(field.name, field.value) }
        } else {
            for field in fields { headers.add(field.name, field.value) }
        }
        fields = []
        let head = HTTPRequestHead(method: method, target: path, versionMinor: 1, headers: headers)
        self.head = head
        return head
    }
}

/// A field value as text: UTF-8 when valid, else ISO-8859-1 byte for byte (as the HTTP/1.1 parser does).
private func decodeFieldValue(_ bytes: UnsafeBufferPointer<UInt8>) -> String {
    if let text = String(validating: bytes, as: UTF8.self) { return text }
    var scalars = String.UnicodeScalarView()
    for byte in bytes { scalars.append(Unicode.Scalar(byte)) }
    return String(scalars)
}

/// Response header blocks in nghttp2's form.
enum HTTP2ResponseHead {
    /// Connection-specific fields (RFC 9113 §8.2.2), and those the server sets itself.
    private static let dropped: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length", "date",
    ]

    /// Calls `body` with `:status`, the handler's fields (names lowercased), `date`, and
    /// `content-length` when given.
    static func withFields<R>(
        status: Int, headers: HTTPHeaders, date: ArraySlice<UInt8>, contentLength: Int?,
        _ body: (UnsafePointer<nghttp2_nv>, Int) -> R
    ) -> R {
        var storage: [UInt8] = []
        var ranges: [(name: Range<Int>, value: Range<Int>)] = []
        func add(_ name: some Sequence<UInt8>, _ value: some Sequence<UInt8>) {
            let nameStart = storage.count
            for byte in name { storage.append(byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) }
            let valueStart = storage.count
            storage.append(contentsOf: value)
            ranges.append((nameStart..<valueStart, valueStart..<storage.count))
        }
        add(":status".utf8, String(status).utf8)
        for (name, value) in headers where !dropped.contains(name.lowercased()) {
            add(name.utf8, value.utf8)
        }
        add("date".utf8, date)
        if let contentLength { add("content-length".utf8, String(contentLength).utf8) }
        storage.append(0)  // never empty, so the base address exists
        return storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            let fields = ranges.map {
                nghttp2_nv(
                    name: base + $0.name.lowerBound, value: base + $0.value.lowerBound,
                    namelen: $0.name.count, valuelen: $0.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return fields.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}

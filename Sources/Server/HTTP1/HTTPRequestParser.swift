import PersistorCore

// Incremental, strict HTTP/1.1 request parser (RFC 9112 / RFC 9110).
//
// The parser owns a byte buffer. The connection `feed`s whatever it reads from the socket and then
// calls `next()` until it returns `nil`. Each request yields `.head` (request line and header fields,
// validated) and later `.request` (head plus the decoded body). Any protocol violation throws an
// `HTTPParseError`, after which the parser is poisoned: every later `next()` throws the same error
// and further input is discarded.
//
// Framing is deliberately strict so that no request can be read differently by this parser and by
// some other HTTP implementation (request smuggling): lines must end in CRLF, obs-fold is refused,
// Content-Length must be a single plain decimal, Transfer-Encoding must be exactly `chunked`, and a
// request may not carry both.
//
// Complexity: every input byte is examined a constant number of times. Scanning a partial line
// resumes where the previous scan stopped, complete lines are consumed from the buffer as soon as they
// are parsed, and body bytes are copied once from the buffer into the request body.

/// Size limits of a request.
package struct HTTPParserLimits: Sendable, Equatable {
    /// Request line + all header lines + trailer section (including leading empty lines and the
    /// terminating empty line), in bytes.
    package var maxHeaderBytes: Int
    /// Decoded body bytes.
    package var maxBodyBytes: Int

    package init(maxHeaderBytes: Int = 64 * 1024, maxBodyBytes: Int = 32 * 1024 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }
}

/// A protocol violation: the server answers `status` with `reason` as text and closes the connection.
package struct HTTPParseError: Error, Equatable, Sendable {
    /// 400, 413, 414, 431, 501 or 505.
    package var status: Int
    /// Short, specific and safe to show a client (never contains bytes of the request).
    package var reason: String

    package init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

package enum HTTPParserEvent: Sendable {
    /// Request line and headers are complete and valid; the body (if any) follows.
    /// The connection uses this to send `100 Continue` or reject early.
    case head(HTTPRequestHead)
    /// The whole request (head + decoded body) is complete.
    case request(HTTPRequest)
}

package struct HTTPRequestParser: Sendable {
    private enum State: Sendable {
        /// Waiting for the request line (leading empty lines are skipped).
        case requestLine
        /// Reading header field lines until the empty line.
        case headerFields
        /// Content-Length body; `remaining` bytes still to copy.
        case fixedBody(remaining: Int)
        /// Expecting a chunk-size line.
        case chunkSize
        /// Inside chunk data; `remaining` bytes still to copy.
        case chunkData(remaining: Int)
        /// Expecting the CRLF that follows chunk data.
        case chunkDataEnd
        /// Reading trailer field lines (validated, then discarded) until the empty line.
        case trailerFields
        /// The request is complete; the next call returns `.request`.
        case complete
    }

    private enum LineScan {
        case line(length: Int)
        case needMore
        case tooLong
        case bareCR
        case bareLF
    }

    /// Upper bound for a chunk-size line (size, extensions), without its CRLF.
    static let maxChunkLineBytes = 4096
    /// Upper bound for the number of fields (header fields plus trailer fields) in one request.
    static let maxFieldCount = 256
    /// Upper bound for a method name.
    static let maxMethodBytes = 32
    /// Upper bound for the body capacity reserved before the body bytes arrive.
    static let maxInitialBodyCapacity = 1 << 20
    /// A fully consumed buffer keeps its allocation up to this capacity.
    static let retainedBufferCapacity = 1 << 20

    private let maxHeaderBytes: Int
    private let maxBodyBytes: Int

    /// Received bytes; `buffer[readIndex...]` are not yet consumed.
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// How far (relative to `readIndex`) the current line has been scanned for its CRLF.
    private var scanOffset = 0
    private var state: State = .requestLine
    private var failure: HTTPParseError?

    // Per-request state, reset after `.request`.
    /// Bytes of the head (and trailer section) consumed so far, counted against `maxHeaderBytes`.
    private var headBytes = 0
    private var fieldCount = 0
    private var method = ""
    private var target = ""
    private var versionMinor = 1
    private var fields: [(name: String, value: String)] = []
    private var hostCount = 0
    private var contentLengthCount = 0
    private var contentLength: UInt64 = 0
    private var transferEncodingCount = 0
    private var chunkedCodings = 0
    private var otherCodings = 0
    /// Whether the last coding listed (over all Transfer-Encoding fields) is `chunked`.
    private var lastCodingChunked = false
    private var emptyTransferEncoding = false
    private var head = HTTPRequestHead(method: "", target: "", versionMinor: 1, headers: HTTPHeaders())
    private var body: [UInt8] = []

    package init(limits: HTTPParserLimits = HTTPParserLimits()) {
        maxHeaderBytes = max(0, limits.maxHeaderBytes)
        maxBodyBytes = max(0, limits.maxBodyBytes)
    }

    // MARK: - Public API

    /// Appends bytes read from the socket.
    package mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard failure == nil, !bytes.isEmpty else { return }
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Appends bytes (convenience for tests).
    package mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// Next event from the buffered bytes, or nil when more bytes are needed.
    /// For every request it returns `.head` first, then `.request`.
    /// After an error every later call throws the same error (the parser is poisoned).
    package mutating func next() throws(HTTPParseError) -> HTTPParserEvent? {
        if let failure { throw failure }
        do {
            return try step()
        } catch {
            failure = error
            buffer = []
            readIndex = 0
            scanOffset = 0
            body = []
            fields = []
            throw error
        }
    }

    /// Bytes buffered but not yet consumed (for the caller's memory accounting and tests).
    /// Body bytes already copied into the request in progress are not counted.
    package var bufferedByteCount: Int { buffer.count - readIndex }

    /// Body bytes of the request in progress decoded so far (the caller counts them against its
    /// in-flight budget as they arrive).
    package var bodyBytesReceived: Int { body.count }

    /// True when no request is partially received (nothing buffered for a request in progress).
    package var isIdle: Bool {
        guard failure == nil, case .requestLine = state else { return false }
        return readIndex == buffer.count
    }

    // MARK: - State machine

    private mutating func step() throws(HTTPParseError) -> HTTPParserEvent? {
        while true {
            switch state {
            case .requestLine, .headerFields, .trailerFields:
                // Remaining head budget; never negative because a line is only accepted within it.
                let budget = maxHeaderBytes - headBytes
                // A request line over the budget is a target too long (RFC 9112 §3: 414); empty
                // lines before it that used the budget up make the head too large.
                let tooLong: HTTPParseError
                if case .requestLine = state, readIndex < buffer.count, buffer[readIndex] != .cr {
                    tooLong = .targetTooLong
                } else {
                    tooLong = .headerTooLarge
                }
                guard let length = try scanLine(limit: budget, tooLong: tooLong) else { return nil }
                let start = readIndex
                readIndex += length + 2
                headBytes += length + 2
                scanOffset = 0
                switch state {
                case .requestLine:
                    if length == 0 { continue }  // leading empty line
                    try parseRequestLine(start: start, length: length)
                    state = .headerFields
                case .headerFields:
                    if length == 0 { return .head(try finishHead()) }
                    try parseField(start: start, length: length, isTrailer: false)
                default:
                    if length == 0 {
                        state = .complete
                    } else {
                        try parseField(start: start, length: length, isTrailer: true)
                    }
                }

            case .fixedBody(let remaining):
                let copied = copyBody(upTo: remaining)
                if copied < remaining {
                    state = .fixedBody(remaining: remaining - copied)
                    return nil
                }
                state = .complete

            case .chunkSize:
                guard let length = try scanLine(limit: Self.maxChunkLineBytes + 2, tooLong: .chunkLineTooLong)
                else { return nil }
                let size = try parseChunkSize(start: readIndex, length: length)
                readIndex += length + 2
                scanOffset = 0
                if size == 0 {
                    state = .trailerFields
                } else {
                    // maxBodyBytes - body.count >= 0 because every accepted chunk fitted.
                    guard size <= UInt64(maxBodyBytes - body.count) else { throw .bodyTooLarge }
                    state = .chunkData(remaining: Int(size))
                }

            case .chunkData(let remaining):
                let copied = copyBody(upTo: remaining)
                if copied < remaining {
                    state = .chunkData(remaining: remaining - copied)
                    return nil
                }
                state = .chunkDataEnd

            case .chunkDataEnd:
                let available = buffer.count - readIndex
                guard available > 0 else { return nil }
                guard buffer[readIndex] == .cr else { throw .missingChunkCRLF }
                guard available > 1 else { return nil }
                guard buffer[readIndex + 1] == .lf else { throw .missingChunkCRLF }
                readIndex += 2
                state = .chunkSize

            case .complete:
                return .request(finishRequest())
            }
        }
    }

    /// Finds the CRLF that ends the line starting at `readIndex`, resuming at `scanOffset`.
    /// `limit` is the most bytes the line may take including its CRLF.
    /// Returns the line length without CRLF, or nil when more bytes are needed.
    private mutating func scanLine(limit: Int, tooLong: HTTPParseError) throws(HTTPParseError) -> Int? {
        let start = readIndex
        let available = buffer.count - start
        var index = scanOffset
        let result: LineScan = buffer.withUnsafeBufferPointer { storage in
            guard index < available, let base = storage.baseAddress.map({ $0 + start }) else { return .needMore }
            let end = min(available, limit)
            while index < end {
                let byte = base[index]
                if byte > .cr {
                    index &+= 1
                    continue
                }
                if byte == .cr {
                    guard index + 1 < available else { return .needMore }
                    guard base[index + 1] == .lf else { return .bareCR }
                    return index + 1 < limit ? .line(length: index) : .tooLong
                }
                if byte == .lf { return .bareLF }
                index &+= 1
            }
            return available > end ? .tooLong : .needMore
        }
        switch result {
        case .line(let length):
            return length
        case .needMore:
            scanOffset = index
            return nil
        case .tooLong:
            throw tooLong
        case .bareCR:
            throw .bareCR
        case .bareLF:
            throw .bareLF
        }
    }

    /// Copies up to `limit` buffered bytes into the body; returns how many were copied.
    private mutating func copyBody(upTo limit: Int) -> Int {
        let count = min(buffer.count - readIndex, limit)
        if count > 0 {
            body.append(contentsOf: buffer[readIndex..<readIndex + count])
            readIndex += count
        }
        return count
    }

    /// Drops consumed bytes: all of them once everything is consumed, otherwise when they make up at
    /// least half the buffer (so each byte is moved at most a constant number of times, amortised).
    private mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= Self.retainedBufferCapacity)
            readIndex = 0
        } else if readIndex >= buffer.count / 2 {
            buffer.removeSubrange(0..<readIndex)
            readIndex = 0
        }
    }

    // MARK: - Head

    private mutating func parseRequestLine(start: Int, length: Int) throws(HTTPParseError) {
        let parsed = try buffer.withUnsafeBufferPointer { (storage) throws(HTTPParseError) -> (String, String, Int) in
            let line = UnsafeBufferPointer(rebasing: storage[start..<start + length])
            let count = line.count

            // method = token, then exactly one SP
            var index = 0
            while index < count, index <= Self.maxMethodBytes, isTokenByte(line[index]) { index += 1 }
            if index > Self.maxMethodBytes { throw .methodTooLong }
            if index == 0 || index == count || line[index] != .space { throw .invalidMethod }
            let methodEnd = index

            // request-target = visible ASCII, then exactly one SP
            index += 1
            let targetStart = index
            while index < count, line[index] >= 0x21, line[index] <= 0x7E { index += 1 }
            if index == targetStart || index == count || line[index] != .space { throw .invalidTarget }
            let targetEnd = index

            // HTTP-version = "HTTP/" DIGIT "." DIGIT, then the line ends
            index += 1
            let version = UnsafeBufferPointer(rebasing: line[index...])
            guard version.count == 8,
                version[0] == 0x48, version[1] == 0x54, version[2] == 0x54, version[3] == 0x50,  // HTTP
                version[4] == 0x2F, version[6] == 0x2E,  // "/" "."
                isDigit(version[5]), isDigit(version[7])
            else { throw .malformedVersion }
            let major = version[5] &- 0x30, minor = version[7] &- 0x30
            guard major == 1, minor <= 1 else { throw .versionNotSupported }

            let methodBytes = UnsafeBufferPointer(rebasing: line[0..<methodEnd])
            let targetBytes = UnsafeBufferPointer(rebasing: line[targetStart..<targetEnd])
            try checkTargetForm(targetBytes, method: methodBytes)
            return (
                String(decoding: methodBytes, as: UTF8.self),
                String(decoding: targetBytes, as: UTF8.self),
                Int(minor)
            )
        }
        (method, target, versionMinor) = parsed
        fields.reserveCapacity(16)
    }

    /// Parses one header or trailer field line. Header fields are stored; trailer fields are only
    /// validated (and counted against the field limit), then discarded.
    private mutating func parseField(start: Int, length: Int, isTrailer: Bool) throws(HTTPParseError) {
        fieldCount += 1
        if fieldCount > Self.maxFieldCount { throw .tooManyFields }

        let field = try buffer.withUnsafeBufferPointer { (storage) throws(HTTPParseError) -> ParsedField in
            let line = UnsafeBufferPointer(rebasing: storage[start..<start + length])
            return try parseFieldLine(line, decode: !isTrailer)
        }
        guard !isTrailer else { return }

        switch field.kind {
        case .host:
            hostCount += 1
            if !field.validHost { throw .invalidHost }
        case .contentLength:
            contentLengthCount += 1
            if contentLengthCount > 1 { throw .multipleContentLength }
            guard let value = field.contentLength else { throw .invalidContentLength }
            contentLength = value
        case .transferEncoding:
            transferEncodingCount += 1
            chunkedCodings += field.chunkedCodings
            otherCodings += field.otherCodings
            if field.chunkedCodings == 0 && field.otherCodings == 0 {
                emptyTransferEncoding = true
            } else {
                lastCodingChunked = field.lastCodingChunked
            }
        case .other:
            break
        }
        fields.append((field.name, field.value))
    }

    /// Validates the head as a whole, decides the body framing and returns the head.
    private mutating func finishHead() throws(HTTPParseError) -> HTTPRequestHead {
        if versionMinor >= 1 && hostCount == 0 { throw .missingHost }
        if hostCount > 1 { throw .multipleHost }

        let next: State
        if transferEncodingCount > 0 {
            if contentLengthCount > 0 { throw .contentLengthWithTransferEncoding }
            if versionMinor == 0 { throw .transferEncodingInHTTP10 }
            if emptyTransferEncoding { throw .emptyTransferEncoding }
            // chunked applied twice, or not last: the body's length cannot be determined, which
            // RFC 9112 §6.1 and §6.3 make a 400. Only a coding the server lacks is a 501.
            if chunkedCodings > 1 || (chunkedCodings == 1 && !lastCodingChunked) { throw .chunkedNotFinal }
            guard chunkedCodings == 1, otherCodings == 0 else { throw .unsupportedTransferCoding }
            next = .chunkSize
        } else if contentLengthCount > 0 {
            guard contentLength <= UInt64(maxBodyBytes) else { throw .bodyTooLarge }
            let length = Int(contentLength)
            if length > 0 {
                body.reserveCapacity(min(length, Self.maxInitialBodyCapacity))
                next = .fixedBody(remaining: length)
            } else {
                next = .complete
            }
        } else {
            next = .complete
        }

        head = HTTPRequestHead(
            method: method, target: target, versionMinor: versionMinor,
            headers: HTTPHeaders(fields))
        fields = []
        state = next
        return head
    }

    private mutating func finishRequest() -> HTTPRequest {
        let request = HTTPRequest(head: head, body: body)
        body = []
        head = HTTPRequestHead(method: "", target: "", versionMinor: 1, headers: HTTPHeaders())
        method = ""
        target = ""
        versionMinor = 1
        fields = []
        headBytes = 0
        fieldCount = 0
        hostCount = 0
        contentLengthCount = 0
        contentLength = 0
        transferEncodingCount = 0
        chunkedCodings = 0
        otherCodings = 0
        lastCodingChunked = false
        emptyTransferEncoding = false
        state = .requestLine
        return request
    }

    // MARK: - Chunked

    /// chunk-size [ BWS ";" chunk-ext ]; the extension is validated for allowed bytes and ignored.
    private func parseChunkSize(start: Int, length: Int) throws(HTTPParseError) -> UInt64 {
        try buffer.withUnsafeBufferPointer { (storage) throws(HTTPParseError) -> UInt64 in
            let line = UnsafeBufferPointer(rebasing: storage[start..<start + length])
            var size: UInt64 = 0
            var index = 0
            while index < line.count, let digit = Hex.value(line[index]) {
                if index == 16 { throw .invalidChunkSize }  // at most 16 hex digits: no overflow
                size = size << 4 | UInt64(digit)
                index += 1
            }
            if index == 0 { throw .invalidChunkSize }
            guard index < line.count else { return size }

            while index < line.count, line[index] == .space || line[index] == .tab { index += 1 }
            guard index < line.count, line[index] == .semicolon else { throw .invalidChunkSize }
            while index < line.count {
                if !isFieldValueByte(line[index]) { throw .invalidChunkExtension }
                index += 1
            }
            return size
        }
    }
}

// MARK: - Field lines

private enum FieldKind {
    case host, contentLength, transferEncoding, other
}

private struct ParsedField {
    var kind: FieldKind = .other
    var name = ""
    var value = ""
    /// For Content-Length: the value when it is 1...19 decimal digits.
    var contentLength: UInt64?
    /// For Transfer-Encoding: how many list elements are `chunked`, and how many are something else.
    var chunkedCodings = 0
    var otherCodings = 0
    var lastCodingChunked = false
    /// For Host: the value is `uri-host [ ":" port ]` (RFC 9110 §7.2), or empty.
    var validHost = true
}

/// field-line = field-name ":" OWS field-value OWS
private func parseFieldLine(_ line: UnsafeBufferPointer<UInt8>, decode: Bool) throws(HTTPParseError) -> ParsedField {
    let count = line.count
    // count > 0: empty lines end the section and never reach here.
    if line[0] == .space || line[0] == .tab { throw .obsFold }

    var colon = 0
    while colon < count, isTokenByte(line[colon]) { colon += 1 }
    guard colon < count, line[colon] == .colon else {
        if colon < count, line[colon] == .space || line[colon] == .tab { throw .whitespaceBeforeColon }
        throw .invalidFieldName
    }
    if colon == 0 { throw .invalidFieldName }

    var valueStart = colon + 1
    var valueEnd = count
    while valueStart < valueEnd, line[valueStart] == .space || line[valueStart] == .tab { valueStart += 1 }
    while valueEnd > valueStart, line[valueEnd - 1] == .space || line[valueEnd - 1] == .tab { valueEnd -= 1 }

    var highBits: UInt8 = 0
    for index in valueStart..<valueEnd {
        let byte = line[index]
        if !isFieldValueByte(byte) { throw .invalidFieldValue }
        highBits |= byte
    }

    let nameBytes = UnsafeBufferPointer(rebasing: line[0..<colon])
    let valueBytes = UnsafeBufferPointer(rebasing: line[valueStart..<valueEnd])
    var field = ParsedField()
    if equalsLowercased(nameBytes, "host") {
        field.kind = .host
        field.validHost = isValidHost(valueBytes)
    } else if equalsLowercased(nameBytes, "content-length") {
        field.kind = .contentLength
        field.contentLength = parseContentLength(valueBytes)
    } else if equalsLowercased(nameBytes, "transfer-encoding") {
        field.kind = .transferEncoding
        countCodings(valueBytes, into: &field)
    }
    guard decode else { return field }

    field.name = String(decoding: nameBytes, as: UTF8.self)
    if highBits < 0x80 {
        field.value = String(decoding: valueBytes, as: UTF8.self)
    } else if let utf8 = String(validating: valueBytes, as: UTF8.self) {
        // obs-text that is valid UTF-8 (what senders mean in practice, e.g. Pub/Sub attributes).
        field.value = utf8
    } else {
        // Other obs-text: ISO-8859-1, each byte becomes the Unicode scalar of the same value.
        var scalars = String.UnicodeScalarView()
        for byte in valueBytes { scalars.append(Unicode.Scalar(byte)) }
        field.value = String(scalars)
    }
    return field
}

/// 1...19 ASCII digits, nothing else (no sign, spaces, or lists). 19 digits always fit in UInt64.
private func parseContentLength(_ bytes: UnsafeBufferPointer<UInt8>) -> UInt64? {
    guard (1...19).contains(bytes.count) else { return nil }
    var value: UInt64 = 0
    for byte in bytes {
        guard isDigit(byte) else { return nil }
        value = value &* 10 &+ UInt64(byte &- 0x30)
    }
    return value
}

/// Splits a Transfer-Encoding value on commas, trims OWS, ignores empty list elements (RFC 9110
/// §5.6.1) and counts `chunked` (case-insensitive) and other elements.
private func countCodings(_ bytes: UnsafeBufferPointer<UInt8>, into field: inout ParsedField) {
    var index = 0
    let count = bytes.count
    while index <= count {
        var end = index
        while end < count, bytes[end] != .comma { end += 1 }
        var lower = index, upper = end
        while lower < upper, bytes[lower] == .space || bytes[lower] == .tab { lower += 1 }
        while upper > lower, bytes[upper - 1] == .space || bytes[upper - 1] == .tab { upper -= 1 }
        if upper > lower {
            let chunked = equalsLowercased(UnsafeBufferPointer(rebasing: bytes[lower..<upper]), "chunked")
            if chunked {
                field.chunkedCodings += 1
            } else {
                field.otherCodings += 1
            }
            field.lastCodingChunked = chunked
        }
        index = end + 1
    }
}

/// `uri-host [ ":" port ]` (RFC 3986 §3.2.2-3): an IP-literal in brackets or a reg-name
/// (unreserved, pct-encoded, sub-delims), then optional digits after a colon. Empty is allowed (RFC
/// 9112 §3.2: a target without authority). Refuses what two parsers could read differently, such
/// as `a b` or a list (`a, b`).
private func isValidHost(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    var index = 0
    let count = bytes.count
    if index < count && bytes[index] == 0x5B {  // "[" IP-literal "]"
        index += 1
        while index < count && bytes[index] != 0x5D {
            // IPv6address and IPvFuture use only these.
            guard bytes[index] == 0x3A || isRegNameByte(bytes[index]) else { return false }
            index += 1
        }
        guard index < count else { return false }
        index += 1
    } else {
        while index < count && isRegNameByte(bytes[index]) { index += 1 }
    }
    guard index < count else { return true }
    guard bytes[index] == 0x3A else { return false }  // ":" port
    index += 1
    while index < count {
        guard isDigit(bytes[index]) else { return false }
        index += 1
    }
    return true
}

/// unreserved / pct-encoded / sub-delims, less the comma: a comma would make the value a list.
@inline(__always)
private func isRegNameByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A,  // DIGIT ALPHA
        0x2D, 0x2E, 0x5F, 0x7E,  // - . _ ~
        0x25,  // % (pct-encoded)
        0x21, 0x24, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x3B, 0x3D:  // ! $ & ' ( ) * + ; =
        return true
    default:
        return false
    }
}

/// The request-target forms this server accepts: origin-form, `*` for OPTIONS, and absolute-form
/// with an `http` or `https` scheme and a non-empty remainder (kept as sent).
private func checkTargetForm(_ target: UnsafeBufferPointer<UInt8>, method: UnsafeBufferPointer<UInt8>) throws(HTTPParseError) {
    // target is non-empty here.
    switch target[0] {
    case 0x2F:  // "/"
        return
    case 0x2A:  // "*"
        guard target.count == 1, method.elementsEqual("OPTIONS".utf8) else { throw .invalidTarget }
    default:
        for scheme in ["http://", "https://"] as [StaticString] {
            let prefixLength = scheme.utf8CodeUnitCount
            if target.count > prefixLength,
                equalsLowercased(UnsafeBufferPointer(rebasing: target[0..<prefixLength]), scheme)
            {
                return
            }
        }
        throw .invalidTarget
    }
}

// MARK: - Byte classes

/// Whether `bytes`, lowercased, equal `lowercase` (which must be lowercase ASCII).
/// `byte | 0x20` lowercases letters; no other byte maps onto a lowercase letter, `-`, `:` or `/`.
@inline(__always)
private func equalsLowercased(_ bytes: UnsafeBufferPointer<UInt8>, _ lowercase: StaticString) -> Bool {
    let count = lowercase.utf8CodeUnitCount
    guard bytes.count == count else { return false }
    let literal = lowercase.utf8Start
    for index in 0..<count where bytes[index] | 0x20 != literal[index] {
        return false
    }
    return true
}

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
///       / DIGIT / ALPHA
@inline(__always)
private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A,
        0x21, 0x23...0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E:
        return true
    default:
        return false
    }
}

/// HTAB, SP, VCHAR, obs-text.
@inline(__always)
private func isFieldValueByte(_ byte: UInt8) -> Bool {
    byte >= 0x20 ? byte != 0x7F : byte == .tab
}

@inline(__always)
private func isDigit(_ byte: UInt8) -> Bool {
    byte >= 0x30 && byte <= 0x39
}

private extension UInt8 {
    static let tab: UInt8 = 0x09
    static let lf: UInt8 = 0x0A
    static let cr: UInt8 = 0x0D
    static let space: UInt8 = 0x20
    static let comma: UInt8 = 0x2C
    static let colon: UInt8 = 0x3A
    static let semicolon: UInt8 = 0x3B
}

// MARK: - Errors

extension HTTPParseError {
    static let bareLF = HTTPParseError(status: 400, reason: "line not terminated by CRLF (bare LF)")
    static let bareCR = HTTPParseError(status: 400, reason: "bare CR not followed by LF")
    static let headerTooLarge = HTTPParseError(status: 431, reason: "request header too large")
    static let targetTooLong = HTTPParseError(status: 414, reason: "request target too long")
    static let invalidHost = HTTPParseError(status: 400, reason: "invalid Host header")
    static let chunkedNotFinal = HTTPParseError(status: 400, reason: "chunked must be applied once, as the final transfer coding")
    static let tooManyFields = HTTPParseError(status: 431, reason: "too many header fields")
    static let methodTooLong = HTTPParseError(status: 400, reason: "method too long")
    static let invalidMethod = HTTPParseError(status: 400, reason: "invalid method in request line")
    static let invalidTarget = HTTPParseError(status: 400, reason: "invalid request target")
    static let malformedVersion = HTTPParseError(status: 400, reason: "malformed HTTP version")
    static let versionNotSupported = HTTPParseError(status: 505, reason: "HTTP version not supported")
    static let obsFold = HTTPParseError(status: 400, reason: "obsolete line folding not allowed")
    static let whitespaceBeforeColon = HTTPParseError(status: 400, reason: "whitespace between field name and colon")
    static let invalidFieldName = HTTPParseError(status: 400, reason: "invalid header field name")
    static let invalidFieldValue = HTTPParseError(status: 400, reason: "invalid character in header field value")
    static let missingHost = HTTPParseError(status: 400, reason: "missing Host header")
    static let multipleHost = HTTPParseError(status: 400, reason: "multiple Host headers")
    static let invalidContentLength = HTTPParseError(status: 400, reason: "invalid Content-Length")
    static let multipleContentLength = HTTPParseError(status: 400, reason: "multiple Content-Length headers")
    static let contentLengthWithTransferEncoding =
        HTTPParseError(status: 400, reason: "both Content-Length and Transfer-Encoding")
    static let transferEncodingInHTTP10 = HTTPParseError(status: 400, reason: "Transfer-Encoding in HTTP/1.0 request")
    static let emptyTransferEncoding = HTTPParseError(status: 400, reason: "empty Transfer-Encoding")
    static let unsupportedTransferCoding = HTTPParseError(status: 501, reason: "transfer coding not supported")
    static let bodyTooLarge = HTTPParseError(status: 413, reason: "request body too large")
    static let invalidChunkSize = HTTPParseError(status: 400, reason: "invalid chunk size")
    static let invalidChunkExtension = HTTPParseError(status: 400, reason: "invalid chunk extension")
    static let chunkLineTooLong = HTTPParseError(status: 400, reason: "chunk size line too long")
    static let missingChunkCRLF = HTTPParseError(status: 400, reason: "missing CRLF after chunk data")
}

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A failed socket call, with the `errno` it left (so callers can tell a refused connection from a
/// timeout or a reset).
package struct SocketError: Error, CustomStringConvertible {
    package let operation: String
    package let code: Int32

    package init(_ operation: String, code: Int32 = errno) {
        self.operation = operation
        self.code = code
    }

    package var isTimeout: Bool { code == EAGAIN || code == EWOULDBLOCK }
    package var isRefused: Bool { code == ECONNREFUSED }
    package var isReset: Bool { code == ECONNRESET || code == EPIPE }

    package var description: String {
        isTimeout ? "\(operation): timed out" : "\(operation): \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// One HTTP/1.1 response as it came off the wire.
package struct RawHTTPResponse: Sendable {
    package var version: String
    package var status: Int
    package var reason: String
    /// Header fields in wire order, names as sent.
    package var headers: [(name: String, value: String)]
    package var body: [UInt8]

    /// The first value of a header (case-insensitive name), or nil.
    package func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    /// Every value of a header (case-insensitive name).
    package func headerValues(_ name: String) -> [String] {
        headers.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
    }

    package var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// True when the response says the server closes the connection after it.
    package var closesConnection: Bool {
        headerValues("Connection").contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
    }
}

/// A small blocking HTTP/1.1 client over a POSIX TCP socket, for end-to-end tests that need exact
/// control over the bytes on the wire (pipelining, partial heads, malformed requests).
///
/// Every socket has receive and send timeouts, so no test can hang on it: a read that gets no data
/// for `timeout` seconds throws a `SocketError` whose `isTimeout` is true.
/// Not thread-safe: use one client per thread.
package final class RawHTTPClient {
    package let port: Int
    package let timeout: Double
    private var fd: Int32
    /// Received bytes not yet consumed by a parsed response.
    private var buffer: [UInt8] = []
    private var sawEOF = false
    private var sawReset = false
    /// Status codes of the interim (1xx) responses seen so far, in order.
    package private(set) var interimStatuses: [Int] = []

    /// Connects to `host:port` (IPv4 literal). Throws `SocketError` (e.g. `isRefused`).
    /// `receiveBufferBytes` shrinks the socket's receive buffer (SO_RCVBUF, before connecting, so
    /// the advertised window is small too): a peer that reads little fills up soon.
    package init(host: String = "127.0.0.1", port: Int, timeout: Double = 10, receiveBufferBytes: Int? = nil) throws {
        self.port = port
        self.timeout = timeout
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket") }
        setTimeout(timeout)
        if var size = receiveBufferBytes.map(Int32.init) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            Glibc.close(fd)
            throw SocketError("inet_pton \(host)", code: EINVAL)
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            Glibc.close(fd)
            fd = -1
            throw SocketError("connect to \(host):\(port)", code: code)
        }
    }

    deinit { close() }

    /// Closes the socket (idempotent).
    package func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    private func setTimeout(_ seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: Sending

    /// Writes all of `bytes` (blocking, bounded by the send timeout).
    package func send(_ bytes: [UInt8]) throws {
        guard fd >= 0 else { throw SocketError("send", code: EBADF) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw SocketError("send (\(offset) of \(bytes.count) bytes sent)")
            }
        }
    }

    package func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Aborts the connection: the server gets a TCP reset (RST) instead of an orderly close.
    package func reset() {
        guard fd >= 0 else { return }
        var abort = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    /// Half-closes: the server sees end of input, the client can still read.
    package func shutdownWrite() {
        if fd >= 0 { Glibc.shutdown(fd, Int32(SHUT_WR)) }
    }

    // MARK: Receiving

    /// Reads once into the buffer; returns the number of bytes read (0 at end of input).
    @discardableResult
    private func fill() throws -> Int {
        if sawEOF { return 0 }
        guard fd >= 0 else { throw SocketError("recv", code: EBADF) }
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                return n
            }
            if n == 0 {
                sawEOF = true
                return 0
            }
            if errno == EINTR { continue }
            let code = errno
            if code == ECONNRESET {
                sawReset = true
                sawEOF = true
                return 0
            }
            throw SocketError("recv (\(buffer.count) bytes buffered)", code: code)
        }
    }

    /// Reads one response. Interim `1xx` responses (other than 101) are recorded in
    /// `interimStatuses` and skipped unless `returnInterim` is true. `headRequest` says the request
    /// was HEAD, so the response has no body whatever its headers say.
    package func readResponse(headRequest: Bool = false, returnInterim: Bool = false) throws -> RawHTTPResponse {
        while true {
            let headEnd = try readHead()
            let headText = String(decoding: buffer[0..<headEnd], as: UTF8.self)
            buffer.removeSubrange(0..<(headEnd + 4))
            var lines = headText.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst()
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
                throw TestFailure("malformed status line: \(statusLine.debugDescription)")
            }
            var headers: [(name: String, value: String)] = []
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { throw TestFailure("malformed header line: \(line.debugDescription)") }
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            var response = RawHTTPResponse(
                version: String(parts[0]), status: status,
                reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: [])
            if (100...199).contains(status) && status != 101 {
                interimStatuses.append(status)
                if returnInterim { return response }
                continue
            }
            if headRequest || status == 204 || status == 304 || (100...199).contains(status) {
                return response
            }
            if let encoding = response.header("Transfer-Encoding"), encoding.lowercased().contains("chunked") {
                response.body = try readChunkedBody()
            } else if let lengthText = response.header("Content-Length") {
                guard let length = Int(lengthText), length >= 0 else { throw TestFailure("bad Content-Length \(lengthText)") }
                response.body = try readExactly(length)
            } else {
                response.body = try readUntilClosed()
            }
            return response
        }
    }

    /// Index of the `\r\n\r\n` that ends the head at the start of the buffer (reading as needed).
    private func readHead() throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= 4 {
                var i = searchFrom
                while i + 3 < buffer.count {
                    if buffer[i] == 0x0D && buffer[i + 1] == 0x0A && buffer[i + 2] == 0x0D && buffer[i + 3] == 0x0A { return i }
                    i += 1
                }
                searchFrom = max(0, buffer.count - 3)
            }
            if try fill() == 0 {
                throw TestFailure(
                    "connection closed\(sawReset ? " (reset)" : "") before a complete response head; received \(buffer.count) bytes: \(String(decoding: buffer.prefix(200), as: UTF8.self).debugDescription)"
                )
            }
        }
    }

    private func readExactly(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            if try fill() == 0 {
                throw TestFailure("connection closed after \(buffer.count) of \(count) body bytes")
            }
        }
        let bytes = Array(buffer[0..<count])
        buffer.removeSubrange(0..<count)
        return bytes
    }

    private func readLine() throws -> String {
        while true {
            if let index = buffer.indices.dropLast().first(where: { buffer[$0] == 0x0D && buffer[$0 + 1] == 0x0A }) {
                let line = String(decoding: buffer[0..<index], as: UTF8.self)
                buffer.removeSubrange(0..<(index + 2))
                return line
            }
            if try fill() == 0 { throw TestFailure("connection closed inside a chunked body") }
        }
    }

    private func readChunkedBody() throws -> [UInt8] {
        var body: [UInt8] = []
        while true {
            let sizeLine = try readLine()
            let sizeText = sizeLine.split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw TestFailure("bad chunk size line \(sizeLine.debugDescription)")
            }
            if size == 0 {
                while try !readLine().isEmpty {}
                return body
            }
            body += try readExactly(size)
            guard try readLine().isEmpty else { throw TestFailure("chunk data not followed by CRLF") }
        }
    }

    /// Reads at most `count` bytes straight from the socket (blocking, bounded by the receive
    /// timeout) and discards them; returns how many, 0 at end of input or after a reset.
    package func receiveAndDiscard(upTo count: Int) throws -> Int {
        guard fd >= 0 else { throw SocketError("recv", code: EBADF) }
        var chunk = [UInt8](repeating: 0, count: count)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == ECONNRESET { return 0 }
            throw SocketError("recv")
        }
    }

    /// Every byte until the peer closes (a reset counts as closed); throws on timeout.
    package func readUntilClosed() throws -> [UInt8] {
        while try fill() > 0 {}
        let bytes = buffer
        buffer = []
        return bytes
    }

    /// Waits up to `seconds` for the peer to close, discarding anything it sends.
    /// Returns true if it closed (or reset), false if it was still open at the deadline.
    package func waitForClose(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        buffer = []
        while !sawEOF {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return false }
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pollFD, 1, Int32(max(1, min(left, 1) * 1000)))
            if ready <= 0 { continue }
            do {
                try fill()
            } catch {
                return false
            }
            buffer = []
        }
        return true
    }

    /// True when the peer has closed the connection (end of input or reset seen, now or before),
    /// and no unread response bytes remain. Does not block.
    package var isClosedByPeer: Bool {
        if !buffer.isEmpty { return false }
        if sawEOF { return true }
        guard fd >= 0 else { return true }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 && (errno == ECONNRESET || errno == EPIPE) { return true }
        return false
    }

    /// Bytes received and not yet consumed, including any waiting in the kernel. Does not block.
    package var pendingByteCount: Int {
        guard fd >= 0 else { return buffer.count }
        var available: Int32 = 0
        _ = ioctl(fd, UInt(FIONREAD), &available)
        return buffer.count + Int(max(0, available))
    }

    /// The connection ended with a TCP reset rather than an orderly close.
    package var wasReset: Bool { sawReset }

    // MARK: Requests

    /// The bytes of a request. `Host` and `Content-Length` are added unless `headers` already has
    /// them (or `Transfer-Encoding`); `Content-Length` is added when there is a body or the method
    /// usually has one (POST, PUT, PATCH).
    package static func request(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: [UInt8] = [], version: String = "HTTP/1.1"
    ) -> [UInt8] {
        var head = "\(method) \(path) \(version)\r\n"
        let names = Set(headers.map { $0.0.lowercased() })
        if !names.contains("host") && version == "HTTP/1.1" { head += "Host: 127.0.0.1\r\n" }
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !names.contains("content-length") && !names.contains("transfer-encoding")
            && (!body.isEmpty || ["POST", "PUT", "PATCH"].contains(method))
        {
            head += "Content-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    package static func request(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: String, version: String = "HTTP/1.1"
    ) -> [UInt8] {
        request(method, path, headers: headers, body: Array(body.utf8), version: version)
    }

    /// Sends one request and reads its response.
    package func perform(
        _ method: String, _ path: String, headers: [(String, String)] = [],
        body: [UInt8] = []
    ) throws -> RawHTTPResponse {
        try send(Self.request(method, path, headers: headers, body: body))
        return try readResponse(headRequest: method == "HEAD")
    }
}

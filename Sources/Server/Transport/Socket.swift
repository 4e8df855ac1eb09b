import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Thin wrappers over the socket system calls the server needs.
enum Socket {
    struct Error: Swift.Error, CustomStringConvertible {
        var description: String
        /// `code` nil: the cause is in `what` already.
        init(_ what: String, errno code: Int32? = errno) {
            description = code.map { "\(what): \(String(cString: strerror($0)))" } ?? what
        }
    }

    /// A non-blocking listening socket bound to `host:port` (IPv4 or IPv6 literal, or a name).
    static func listen(host: String, port: Int, backlog: Int32 = 1024) throws(Error) -> Int32 {
        // getaddrinfo takes "70000" and keeps the low 16 bits: refuse it instead of serving on 4464.
        guard (0...65535).contains(port) else { throw Error("listen port \(port) is not 0-65535", errno: nil) }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            throw Error("cannot resolve listen address \(host):\(port): \(String(cString: gai_strerror(status)))", errno: nil)
        }
        defer { freeaddrinfo(list) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Error("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let code = errno
            close(fd)
            throw Error("cannot bind \(host):\(port)", errno: code)
        }
        guard Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw Error("listen", errno: code)
        }
        return fd
    }

    /// The port a bound socket listens on (useful with port 0).
    static func boundPort(_ fd: Int32) -> Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) { pointer -> Int in
            if family == sa_family_t(AF_INET6) {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    /// Accepts one connection as a non-blocking, close-on-exec socket with TCP_NODELAY; nil on EAGAIN.
    /// TCP_NOTSENT_LOWAT for accepted sockets (tcp(7)).
    static let unsentKernelBytes = 16 * 1024

    static func accept(_ listener: Int32) -> Int32? {
        while true {
            let fd = Glibc.accept(listener, nil, nil)
            if fd >= 0 {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                // Bounds what the kernel takes beyond what is in flight, so output for a peer that
                // reads slowly waits in the connection's own buffer, where the high-water mark and
                // the stall deadline see it (the send buffer autotunes to 4 MiB otherwise).
                var lowWater = Int32(unsentKernelBytes)
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NOTSENT_LOWAT, &lowWater, socklen_t(MemoryLayout<Int32>.size))
                return fd
            }
            switch errno {
            case EINTR, ECONNABORTED, EPROTO: continue
            default: return nil  // EAGAIN, or EMFILE/ENFILE: the next readiness event retries
            }
        }
    }
}

import CEpoll
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The readiness of one loop's sockets, from an edge-triggered epoll instance whose own fd is
/// watched by a single Dispatch read source on the loop's queue.
///
/// Each socket is registered once, for input and output. One Dispatch event then delivers every
/// socket that became ready, instead of one event per socket per readiness change with a source
/// re-armed after each; that per-event work (a hop from libdispatch's manager thread, an
/// `epoll_ctl`, an `ioctl(FIONREAD)`) was most of the server's CPU for small requests.
///
/// Edge-triggered means: `readable` must read until the socket would block (or a read comes back
/// short); a handler that stops early calls `resumeReading` when it wants more, because an edge
/// may have passed meanwhile. `writable` runs only while `setWaitingToWrite(true)` is in force.
/// Touched only on the loop's queue.
final class SocketPoller: @unchecked Sendable {
    typealias Token = UInt64

    private struct Registration {
        let fd: Int32
        let readable: @Sendable () -> Void
        let writable: @Sendable () -> Void
        var waitingToWrite = false
    }

    private let queue: DispatchQueue
    private let epollFD: Int32
    private var source: (any DispatchSourceRead)?
    private var registrations: [Token: Registration] = [:]
    private var nextToken: Token = 1
    private static let batchSize = 256
    private let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: SocketPoller.batchSize)

    init(queue: DispatchQueue) {
        self.queue = queue
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { fatalError("epoll_create1: \(String(cString: strerror(errno)))") }
    }

    deinit {
        events.deallocate()
    }

    /// Starts delivering events (on the queue).
    func start() {
        let source = DispatchSource.makeReadSource(fileDescriptor: epollFD, queue: queue)
        source.setEventHandler { @Sendable [unowned self] in self.poll() }
        source.resume()
        self.source = source
    }

    /// Stops delivering events and closes the epoll instance; every socket must be deregistered.
    func stop() {
        guard let source else { return }
        self.source = nil
        let fd = epollFD
        source.setCancelHandler { @Sendable in close(fd) }
        source.cancel()
    }

    /// Watches `fd`; nil if the kernel refuses (the socket should then be closed). The handlers
    /// are kept until `deregister`.
    func register(fd: Int32, readable: @escaping @Sendable () -> Void,
                  writable: @escaping @Sendable () -> Void) -> Token? {
        let token = nextToken
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        event.data.u64 = token
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { return nil }
        nextToken += 1
        registrations[token] = Registration(fd: fd, readable: readable, writable: writable)
        return token
    }

    /// Stops watching the socket and drops its handlers (events already fetched are skipped).
    func deregister(_ token: Token) {
        guard let registration = registrations.removeValue(forKey: token) else { return }
        var event = epoll_event()
        epoll_ctl(epollFD, EPOLL_CTL_DEL, registration.fd, &event)
    }

    /// Whether output readiness should run the socket's `writable` handler.
    func setWaitingToWrite(_ token: Token, _ waiting: Bool) {
        registrations[token]?.waitingToWrite = waiting
    }

    /// Runs the socket's `readable` handler soon (on the queue, after the current work), for
    /// input that arrived while the handler was not reading.
    func resumeReading(_ token: Token) {
        queue.async { @Sendable [self] in registrations[token]?.readable() }
    }

    private func poll() {
        let input = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        let output = EPOLLOUT.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        while true {
            let count = Int(epoll_wait(epollFD, events, Int32(Self.batchSize), 0))
            // EINTR or nothing: return; the source fires again while the epoll fd is readable.
            guard count > 0 else { return }
            for index in 0..<count {
                let flags = events[index].events
                let token = events[index].data.u64
                if flags & input != 0, let registration = registrations[token] { registration.readable() }
                if flags & output != 0, let registration = registrations[token], registration.waitingToWrite {
                    registration.writable()
                }
            }
            if count < Self.batchSize { return }
        }
    }
}

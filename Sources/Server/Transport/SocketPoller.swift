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
/// Once it runs, the handler keeps the queue while events follow each other: after a round of
/// events it waits up to `lingerMilliseconds` for the next, for at most `maxRounds` rounds, and
/// only then gives the queue back. Under load, the Dispatch source (whose every delivery costs a
/// wake-up of libdispatch's manager thread and an `epoll_ctl`) then fires once per several rounds
/// instead of once per round. Work for the loop from other threads (`wake`, an eventfd in the
/// same epoll set) is run by the handler too, so it is not delayed by the waiting.
///
/// Edge-triggered means: `readable` must read until the socket would block (or a read comes back
/// short, unless its argument says the peer hung up: a FIN or RST queued behind the data makes no
/// new edge); a handler that stops early calls `resumeReading` when it wants more, because an edge
/// may have passed meanwhile. `writable` runs only while `setWaitingToWrite(true)` is in force.
/// Touched only on the loop's queue, except `wake`.
final class SocketPoller: @unchecked Sendable {
    typealias Token = UInt64

    private struct Registration {
        let fd: Int32
        /// Its argument: the peer closed its side, reset the connection or the socket failed.
        let readable: @Sendable (_ hungUp: Bool) -> Void
        let writable: @Sendable () -> Void
        var waitingToWrite = false
    }

    private let queue: DispatchQueue
    private let epollFD: Int32
    /// An eventfd in the epoll set: written by `wake`, it makes the handler run `onWake`.
    private let wakeFD: Int32
    private var onWake: (() -> Void)?
    private var source: (any DispatchSourceRead)?
    private var registrations: [Token: Registration] = [:]
    /// Sockets whose `readable` handler should run at the next wake-up (`resumeReading`).
    private var resumed: [Token] = []
    private var nextToken: Token = 1
    private static let wakeToken: Token = 0
    private static let batchSize = 256
    /// How long the handler waits for more events before giving the queue back.
    private static let lingerMilliseconds: Int32 = 1
    /// Rounds of events the handler runs before giving the queue back (to the loop's timers).
    private static let maxRounds = 16
    private let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: SocketPoller.batchSize)

    init(queue: DispatchQueue) {
        self.queue = queue
        epollFD = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epollFD >= 0 else { fatalError("epoll_create1: \(String(cString: strerror(errno)))") }
        wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFD >= 0 else { fatalError("eventfd: \(String(cString: strerror(errno)))") }
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLET.rawValue
        event.data.u64 = Self.wakeToken
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, wakeFD, &event) == 0 else {
            fatalError("epoll_ctl(eventfd): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        events.deallocate()
        // Closed only here, not by `stop`: a completion may still `wake` a stopped loop, and a
        // closed descriptor's number could by then belong to another file.
        close(wakeFD)
    }

    /// Starts delivering events (on the queue); `onWake` runs after each `wake`.
    func start(onWake: @escaping () -> Void) {
        self.onWake = onWake
        let source = DispatchSource.makeReadSource(fileDescriptor: epollFD, queue: queue)
        source.setEventHandler { @Sendable [unowned self] in self.poll() }
        source.resume()
        self.source = source
    }

    /// Stops delivering events and closes the epoll instance; every socket must be deregistered.
    func stop() {
        guard let source else { return }
        self.source = nil
        onWake = nil
        let fd = epollFD
        source.setCancelHandler { @Sendable in close(fd) }
        source.cancel()
    }

    /// Makes the handler run `onWake` soon, from any thread (after `stop`, nothing happens).
    func wake() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wakeFD, $0.baseAddress, 8) }
    }

    /// Watches `fd`; nil if the kernel refuses (the socket should then be closed). The handlers
    /// are kept until `deregister`.
    func register(
        fd: Int32, readable: @escaping @Sendable (_ hungUp: Bool) -> Void,
        writable: @escaping @Sendable () -> Void
    ) -> Token? {
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

    /// Runs the socket's `readable` handler soon (after the current work), for input that
    /// arrived while the handler was not reading.
    func resumeReading(_ token: Token) {
        resumed.append(token)
        if resumed.count == 1 { wake() }
    }

    private func poll() {
        let hangUp = EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        let input = EPOLLIN.rawValue | hangUp
        let output = EPOLLOUT.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        for round in 0..<Self.maxRounds {
            let count = Int(epoll_wait(epollFD, events, Int32(Self.batchSize), round == 0 ? 0 : Self.lingerMilliseconds))
            // EINTR or nothing: return; the source fires again while the epoll fd is readable.
            guard count > 0 else { return }
            for index in 0..<count {
                let flags = events[index].events
                let token = events[index].data.u64
                if token == Self.wakeToken {
                    wokenUp()
                    continue
                }
                if flags & input != 0, let registration = registrations[token] { registration.readable(flags & hangUp != 0) }
                if flags & output != 0, let registration = registrations[token], registration.waitingToWrite {
                    registration.writable()
                }
            }
        }
    }

    /// Resets the eventfd (before taking the work, so a later `wake` makes a new edge), then
    /// resumes reading where asked and runs `onWake`.
    private func wokenUp() {
        var count: UInt64 = 0
        _ = withUnsafeMutableBytes(of: &count) { read(wakeFD, $0.baseAddress, 8) }
        let tokens = resumed
        resumed = []
        for token in tokens { registrations[token]?.readable(false) }
        onWake?()
    }
}

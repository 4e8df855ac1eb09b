import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A connection whose socket is a `SocketChannel`: the timeout sweep checks the socket's own
/// deadlines (lingering, a stalled write) here, and the protocol's only while neither applies.
protocol SocketChannelOwner: LoopConnection {
    var channel: SocketChannel { get }
    var server: HTTPServer { get }
    /// Releases what the connection holds and cancels the channel.
    func finalClose()
    /// The protocol's timeouts; called on an open connection that is not lingering or stalled.
    func checkProtocolTimeouts(now: MonotonicTime, settings: HTTPServerSettings)
}

extension SocketChannelOwner {
    func checkTimeouts(now: MonotonicTime) {
        guard !channel.cancelled else { return }
        let settings = server.settings
        switch channel.deadline(now: now, idleTimeout: settings.idleTimeout) {
        case .expired:
            // Whatever the kernel still holds for this peer is no use to it: a reset frees it now.
            channel.resetOnClose()
            finalClose()
        case .lingering: break
        case .none: checkProtocolTimeouts(now: now, settings: settings)
        }
    }
}

/// The socket side of a connection, shared by HTTP/1.1 and HTTP/2: the non-blocking fd, its
/// registration with the loop's `SocketPoller` (with the read-suspended and waiting-to-write
/// states), the output buffer and its write loop, write-stall tracking, the lingering half-close,
/// and the close sequence.
///
/// A value stored in its connection and touched only on the loop's queue. It never calls back
/// into the connection: its methods return what happened, and the handlers given to `start`
/// (which capture the connection strongly) run on the queue and are dropped by `cancel`, which
/// also schedules the `closed` handler once. After `cancel` nothing is read, written or watched.
struct SocketChannel {
    enum ReadResult {
        case bytes(Int)
        /// The peer closed its side.
        case end
        case wouldBlock
        case failed
    }

    enum WriteResult {
        /// All output is sent (the buffer is empty).
        case flushed
        /// The socket is full; the `writable` handler runs when it drains.
        case blocked
        /// The socket failed; the connection should close.
        case failed
    }

    enum Deadline {
        case none
        /// Lingering after the half-close, within its time: nothing else is due.
        case lingering
        /// Lingering is over, or a write has been stalled for the idle timeout: close now.
        case expired
    }

    let fd: Int32
    private let loop: EventLoop
    private var token: SocketPoller.Token?
    /// The connection does not want input now; `resumeReading` makes it read again.
    private(set) var readSuspended = false
    /// The poller reported a FIN, RST or error: input must be read to its end, not only to the
    /// first short read, because no further edge will announce what is queued behind the data.
    private(set) var peerHungUp = false
    /// The poller's waiting-to-write flag for this socket, kept here too so a flush that leaves it
    /// unchanged (the usual case) costs no poller lookup.
    private var waitingToWrite = false
    private var onClosed: (@Sendable () -> Void)?
    /// `cancel` ran: the connection is closed.
    private(set) var cancelled = false

    /// Bytes to send, of which the first `outputOffset` are sent.
    var output: [UInt8]
    private(set) var outputOffset = 0
    /// When output last had to wait for the socket, reset only once all output is sent: a peer
    /// that takes a byte now and then must not keep a connection (and its output) forever.
    private(set) var writeStalledSince: MonotonicTime?
    /// When the write side was shut down; the socket is read (and the input discarded) meanwhile.
    private(set) var lingerSince: MonotonicTime?

    init(fd: Int32, loop: EventLoop, output: [UInt8] = []) {
        self.fd = fd
        self.loop = loop
        self.output = output
    }

    /// Unsent output beyond which a connection produces no more (it stops reading requests or
    /// pulling frames) until the peer has taken it: a peer that sends but never reads must not
    /// grow the server's memory.
    static let outputHighWater = 64 * 1024

    /// No output waits to be sent.
    var isFlushed: Bool { outputOffset >= output.count }

    /// At least `outputHighWater` bytes wait to be sent.
    var isOverHighWater: Bool { output.count - outputOffset >= Self.outputHighWater }

    /// The output not sent yet.
    var unsentOutput: [UInt8] { Array(output[outputOffset...]) }

    /// Starts watching the socket: `readable` runs when it has input (it must read until the
    /// socket would block), `writable` when a blocked write can go on, and `closed` once, on the
    /// queue, after `cancel`. If the socket cannot be watched, the channel cancels itself.
    mutating func start(
        readable: @escaping @Sendable (_ hungUp: Bool) -> Void, writable: @escaping @Sendable () -> Void,
        closed: @escaping @Sendable () -> Void
    ) {
        onClosed = closed
        token = loop.poller.register(fd: fd, readable: readable, writable: writable)
        if token == nil { cancel() }
    }

    /// Records what the poller said with a readiness event (see `peerHungUp`).
    mutating func noteReadable(hungUp: Bool) {
        if hungUp { peerHungUp = true }
    }

    /// Whether a read of `count` bytes into a buffer of `capacity` leaves input that the socket
    /// will announce no more: a full buffer, or anything once the peer has hung up.
    func mayHaveMoreInput(afterReading count: Int, capacity: Int) -> Bool {
        count == capacity || peerHungUp
    }

    // MARK: Reading

    /// Reads from the socket `fd` into `buffer` (retrying on EINTR). Static: a method call on the
    /// channel stored in its connection would copy the whole struct (retaining its references)
    /// once per read.
    static func read(_ fd: Int32, into buffer: inout [UInt8]) -> ReadResult {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 { return .bytes(n) }
            if n == 0 { return .end }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    mutating func suspendReading() {
        readSuspended = true
    }

    /// Reads again: the `readable` handler runs soon, for input that arrived meanwhile.
    mutating func resumeReading() {
        guard !cancelled, readSuspended, let token else { return }
        readSuspended = false
        loop.poller.resumeReading(token)
    }

    // MARK: Writing

    /// Sends the buffered output until it is all sent or the socket is full.
    mutating func writeOutput() -> WriteResult {
        while outputOffset < output.count {
            let offset = outputOffset
            let n = output.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                outputOffset += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeStalledSince == nil { writeStalledSince = .now }
                setWaitingToWrite(true)
                return .blocked
            } else {
                return .failed
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 256 * 1024)
        outputOffset = 0
        writeStalledSince = nil
        setWaitingToWrite(false)
        return .flushed
    }

    private mutating func setWaitingToWrite(_ waiting: Bool) {
        guard waiting != waitingToWrite, let token else { return }
        waitingToWrite = waiting
        loop.poller.setWaitingToWrite(token, waiting)
    }

    // MARK: Timeouts and closing

    /// The socket's own deadlines: lingering lasts 2 s, output may wait for the peer for
    /// `idleTimeout` in all (since it was last all sent, however slowly the peer reads meanwhile).
    func deadline(now: MonotonicTime, idleTimeout: Duration) -> Deadline {
        if let since = lingerSince { return now - since > .seconds(2) ? .expired : .lingering }
        if let since = writeStalledSince, now - since > idleTimeout { return .expired }
        return .none
    }

    /// Half-closes (SHUT_WR) and starts lingering; the peer then gets the last bytes rather than
    /// a reset caused by unread input.
    mutating func shutdownWriting() {
        shutdown(fd, Int32(SHUT_WR))
        lingerSince = .now
    }

    /// Drops the output, stops watching the socket (dropping the handlers) and schedules the
    /// `closed` handler, which unregisters the connection and closes the socket or hands it on.
    mutating func cancel() {
        guard !cancelled else { return }
        cancelled = true
        output = []
        outputOffset = 0
        if let token { loop.poller.deregister(token) }
        if let onClosed { loop.enqueue(onClosed) }
        onClosed = nil
    }

    func closeSocket() {
        close(fd)
    }

    /// Makes `close` send a reset and drop unsent data (SO_LINGER 0) instead of a FIN after it.
    func resetOnClose() {
        var abort = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort, socklen_t(MemoryLayout<linger>.size))
    }
}

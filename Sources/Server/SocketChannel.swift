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
    func checkProtocolTimeouts(now: ContinuousClock.Instant, settings: HTTPServerSettings)
}

extension SocketChannelOwner {
    func checkTimeouts(now: ContinuousClock.Instant) {
        guard !channel.cancelled else { return }
        let settings = server.settings
        switch channel.deadline(now: now, idleTimeout: settings.idleTimeout) {
        case .expired: finalClose()
        case .lingering: break
        case .none: checkProtocolTimeouts(now: now, settings: settings)
        }
    }
}

/// The socket side of a connection, shared by HTTP/1.1 and HTTP/2: the non-blocking fd, its read
/// source and lazily made write source (with their suspended flags), the output buffer and its
/// write loop, write-stall tracking, the lingering half-close, and the cancel sequence.
///
/// A value stored in its connection and touched only on the loop's queue. It never calls back
/// into the connection: its methods return what happened, and the handlers given to `start`
/// (which capture the connection strongly) run on the queue and are dropped once both sources
/// are cancelled. After `cancel` the sources are never suspended or resumed again, and no write
/// source is made.
struct SocketChannel {
    enum ReadResult {
        case bytes(Int)
        /// The peer closed its side.
        case end
        case wouldBlock
        case failed
    }

    enum WriteResult {
        /// All output is sent (the buffer is empty and the write source suspended).
        case flushed
        /// The socket is full; the write source calls the `writable` handler when it drains.
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
    private let queue: DispatchQueue
    private var readSource: DispatchSourceRead?
    private var writeSource: DispatchSourceWrite?
    private(set) var readSuspended = false
    private var writeSuspended = true
    private var pendingCancels = 0
    private var onWritable: (@Sendable () -> Void)?
    private var onCancel: (@Sendable () -> Void)?
    /// `cancel` ran: the connection is closed.
    private(set) var cancelled = false

    /// Bytes to send, of which the first `outputOffset` are sent.
    var output: [UInt8]
    private(set) var outputOffset = 0
    private(set) var writeStalledSince: ContinuousClock.Instant?
    /// When the write side was shut down; the socket is read (and the input discarded) meanwhile.
    private(set) var lingerSince: ContinuousClock.Instant?

    init(fd: Int32, queue: DispatchQueue, output: [UInt8] = []) {
        self.fd = fd
        self.queue = queue
        self.output = output
    }

    /// No output waits to be sent.
    var isFlushed: Bool { outputOffset >= output.count }

    /// The output not sent yet.
    var unsentOutput: [UInt8] { Array(output[outputOffset...]) }

    /// Starts watching the socket: `readable` runs when it has input, `writable` when a blocked
    /// write can go on, and `cancelled` once for each source cancelled (see `sourceCancelled`).
    mutating func start(readable: @escaping @Sendable () -> Void, writable: @escaping @Sendable () -> Void,
                        cancelled: @escaping @Sendable () -> Void) {
        onWritable = writable
        onCancel = cancelled
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler(handler: readable)
        source.setCancelHandler(handler: cancelled)
        pendingCancels += 1
        readSource = source
        source.resume()
    }

    // MARK: Reading

    /// Reads into `buffer` (retrying on EINTR).
    func read(into buffer: inout [UInt8]) -> ReadResult {
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n > 0 { return .bytes(n) }
            if n == 0 { return .end }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
        }
    }

    mutating func suspendReading() {
        guard !cancelled, !readSuspended, let source = readSource else { return }
        readSuspended = true
        source.suspend()
    }

    mutating func resumeReading() {
        guard !cancelled, readSuspended, let source = readSource else { return }
        readSuspended = false
        source.resume()
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
                writeStalledSince = nil
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeStalledSince == nil { writeStalledSince = .now }
                resumeWriting()
                return .blocked
            } else {
                return .failed
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 256 * 1024)
        outputOffset = 0
        writeStalledSince = nil
        suspendWriting()
        return .flushed
    }

    private mutating func resumeWriting() {
        guard !cancelled else { return }
        if writeSource == nil, let onWritable, let onCancel {
            let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler(handler: onWritable)
            source.setCancelHandler(handler: onCancel)
            pendingCancels += 1
            writeSource = source
            writeSuspended = true
        }
        guard writeSuspended, let source = writeSource else { return }
        writeSuspended = false
        source.resume()
    }

    private mutating func suspendWriting() {
        guard !cancelled, !writeSuspended, let source = writeSource else { return }
        writeSuspended = true
        source.suspend()
    }

    // MARK: Timeouts and closing

    /// The socket's own deadlines: lingering lasts 2 s, a write may stall for `idleTimeout`.
    func deadline(now: ContinuousClock.Instant, idleTimeout: Duration) -> Deadline {
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

    /// Drops the output and cancels the sources (resuming suspended ones first, as a suspended
    /// source never finishes cancelling). Later suspends and resumes are no-ops.
    mutating func cancel() {
        guard !cancelled else { return }
        cancelled = true
        output = []
        outputOffset = 0
        if let source = readSource {
            if readSuspended { source.resume() }
            source.cancel()
        }
        if let source = writeSource {
            if writeSuspended { source.resume() }
            source.cancel()
        }
    }

    /// Called by the cancel handler of each source. True once the last one is cancelled: the
    /// handlers are then cleared (breaking their cycles with the connection), and the connection
    /// unregisters and either calls `closeSocket` or hands the still-open fd on.
    mutating func sourceCancelled() -> Bool {
        pendingCancels -= 1
        guard pendingCancels == 0 else { return false }
        readSource?.setEventHandler(handler: nil)
        readSource?.setCancelHandler(handler: nil)
        writeSource?.setEventHandler(handler: nil)
        writeSource?.setCancelHandler(handler: nil)
        readSource = nil
        writeSource = nil
        onWritable = nil
        onCancel = nil
        return true
    }

    func closeSocket() {
        close(fd)
    }
}

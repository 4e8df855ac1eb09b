import Dispatch
import Foundation
import Synchronization

/// What a loop's timeout sweep and the server's drain call on each connection it runs.
protocol LoopConnection: AnyObject {
    func checkTimeouts(now: MonotonicTime)
    func drain(_ step: DrainStep)
}

/// The two steps of a graceful shutdown, as a connection sees them.
enum DrainStep {
    /// Shutdown is announced (the server still accepts): finish, and tell the peer to go elsewhere.
    case announce
    /// The listener is closed: finish what was started and close.
    case finish
}

/// A serial queue that runs a set of connections, with the state they share: the socket poller,
/// a read buffer, the response encoder (and its cached `Date`), and a once-a-second sweep that
/// enforces timeouts. Every mutable field is touched only on `queue`.
final class EventLoop: @unchecked Sendable {
    let queue: DispatchQueue
    let poller: SocketPoller
    /// Work handed in from other threads, run by one queue item however much arrives at once.
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private static let key = DispatchSpecificKey<ObjectIdentifier>()
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    var encoder = HTTPResponseEncoder()
    private var connections: [ObjectIdentifier: any LoopConnection] = [:]
    private var sweep: DispatchSourceTimer?

    init(index: Int) {
        queue = DispatchQueue(label: "persistor.loop.\(index)")
        poller = SocketPoller(queue: queue)
        queue.setSpecific(key: Self.key, value: ObjectIdentifier(self))
    }

    var isCurrent: Bool { DispatchQueue.getSpecific(key: Self.key) == ObjectIdentifier(self) }

    /// Runs `work` now if already on this loop, else enqueues it.
    func execute(_ work: @escaping @Sendable () -> Void) {
        if isCurrent {
            work()
            return
        }
        enqueue(work)
    }

    /// Runs `work` on this loop soon, after the work in progress; from any thread. Work enqueued
    /// while earlier work still waits joins it, so a batch of completions (one per archived
    /// request) costs one wake-up of the poller.
    func enqueue(_ work: @escaping @Sendable () -> Void) {
        let first = inbox.withLock { pending in
            pending.append(work)
            return pending.count == 1
        }
        if first { poller.wake() }
    }

    private func runInbox() {
        let work = inbox.withLock { pending in
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &pending)
            return taken
        }
        for item in work { item() }
    }

    func start() {
        poller.start(onWake: { [unowned self] in runInbox() })
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.setEventHandler { @Sendable [unowned self] in
            let now = MonotonicTime.now
            for connection in Array(self.connections.values) { connection.checkTimeouts(now: now) }
        }
        timer.resume()
        sweep = timer
    }

    func stop() {
        sweep?.cancel()
        sweep = nil
        poller.stop()
    }

    func register(_ connection: any LoopConnection) { connections[ObjectIdentifier(connection)] = connection }
    func unregister(_ connection: any LoopConnection) { connections[ObjectIdentifier(connection)] = nil }
    var allConnections: [any LoopConnection] { Array(connections.values) }
}

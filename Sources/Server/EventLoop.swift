import Dispatch
import Foundation

/// What a loop's timeout sweep and the server's drain call on each connection it runs.
protocol LoopConnection: AnyObject {
    func checkTimeouts(now: ContinuousClock.Instant)
    func drain()
}

/// A serial queue that runs a set of connections, with the state they share: a read buffer, the
/// response encoder (and its cached `Date`), and a once-a-second sweep that enforces timeouts.
/// Every mutable field is touched only on `queue`.
final class EventLoop: @unchecked Sendable {
    let queue: DispatchQueue
    private static let key = DispatchSpecificKey<ObjectIdentifier>()
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    var encoder = HTTPResponseEncoder()
    private var connections: [ObjectIdentifier: any LoopConnection] = [:]
    private var sweep: DispatchSourceTimer?

    init(index: Int) {
        queue = DispatchQueue(label: "persistor.loop.\(index)")
        queue.setSpecific(key: Self.key, value: ObjectIdentifier(self))
    }

    var isCurrent: Bool { DispatchQueue.getSpecific(key: Self.key) == ObjectIdentifier(self) }

    /// Runs `work` now if already on this loop, else enqueues it.
    func execute(_ work: @escaping @Sendable () -> Void) {
        if isCurrent { work() } else { queue.async(execute: work) }
    }

    func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + .seconds(1), repeating: .seconds(1), leeway: .milliseconds(100))
        timer.setEventHandler { @Sendable [unowned self] in
            let now = ContinuousClock.now
            for connection in Array(self.connections.values) { connection.checkTimeouts(now: now) }
        }
        timer.resume()
        sweep = timer
    }

    func stop() {
        sweep?.cancel()
        sweep = nil
    }

    func register(_ connection: any LoopConnection) { connections[ObjectIdentifier(connection)] = connection }
    func unregister(_ connection: any LoopConnection) { connections[ObjectIdentifier(connection)] = nil }
    var allConnections: [any LoopConnection] { Array(connections.values) }
}

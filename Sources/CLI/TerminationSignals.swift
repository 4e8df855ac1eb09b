import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM and SIGINT, blocked in every thread and taken by the main thread with sigwait(3).
///
/// Not a Dispatch signal source (nor swift-service-lifecycle's `UnixSignalsSequence`, which is one)
/// and not an async `main`: an async main ends in `dispatch_main()`, which parks the main thread in
/// `sigsuspend` with an empty mask (libdispatch `_dispatch_sigsuspend`), so the main thread takes
/// every process signal whatever was blocked. libdispatch's handler there re-raises it at the thread
/// it recorded as its manager (`_dispatch_muxnote_signal_block_and_raise`); when another worker
/// reads the signalfd by then, the signal stays pending at a thread nobody reads (seen in
/// /proc/PID/task/*/status) and SIGTERM is lost: with a `gs://` store whose credential host did not
/// resolve, 15 of 22 runs kept serving. A signal before the source was registered killed the
/// process outright instead of shutting it down.
///
/// Blocked first thing in a synchronous `main`, while it is the only thread, the signals are
/// blocked in every thread created later (a new thread inherits the mask, pthread_sigmask(3)) and
/// stay pending until the main thread takes them, one that arrives during start-up included.
final class TerminationSignals: Sendable {
    /// Each signal taken, in order.
    let received: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation

    init() {
        (received, continuation) = AsyncStream.makeStream(of: Int32.self)
    }

    private static var set: sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }

    /// Blocks the signals in the calling thread and in every thread it creates from now on.
    static func block() {
        var set = Self.set
        let result = pthread_sigmask(SIG_BLOCK, &set, nil)
        precondition(result == 0, "pthread_sigmask failed: \(result)")
    }

    /// Takes the signals on the calling thread, which must have blocked them, and never returns.
    func takeSignals() -> Never {
        var set = Self.set
        var number: Int32 = 0
        while true {
            if sigwait(&set, &number) == 0 { continuation.yield(number) }
        }
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// A reading of the monotonic clock, in nanoseconds. The connections take one per read and
/// write; a plain integer keeps that as cheap as the `clock_gettime` itself, where the standard
/// library's `ContinuousClock.Instant` (a resilient type) costs runtime calls to copy and destroy.
struct MonotonicTime: Comparable, Sendable {
    var nanoseconds: Int64

    static var now: MonotonicTime {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return MonotonicTime(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
    }

    static func < (a: MonotonicTime, b: MonotonicTime) -> Bool { a.nanoseconds < b.nanoseconds }

    static func - (a: MonotonicTime, b: MonotonicTime) -> Duration { .nanoseconds(a.nanoseconds - b.nanoseconds) }
}

import Foundation

/// The two forms other APIs want a `Duration` in: Foundation's `TimeInterval` (URLSession, Date
/// arithmetic) and whole nanoseconds (Dispatch, random jitter).
extension Duration {
    /// Seconds as a `Double`, for Foundation APIs.
    package var timeInterval: TimeInterval {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// Whole nanoseconds, truncated (durations here are far below the ~292 years that overflow).
    package var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}

// Parsing of the two value syntaxes the configuration uses besides plain strings and integers:
// sizes (`32MiB`, `8 MB`, `65536`) and durations (`0`, `200ms`, `1.5s`, `2m`, `1h`).

/// Size and duration parsing for the config loader.
package enum ConfigValues {
    /// Why a size or duration was rejected.
    package enum ParseError: Error, Sendable, Equatable {
        /// Not of the accepted form at all.
        case malformed
        /// A size of zero or below (sizes must be > 0).
        case notPositive
        /// A negative duration.
        case negative
        /// Does not fit in `Int` bytes, or in `Int64` nanoseconds.
        case tooLarge
    }

    /// Unit multipliers; decimal units are ×1000, binary units ×1024. Case-sensitive.
    static let sizeUnits: [String: Int] = [
        "B": 1,
        "KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000,
        "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
    ]

    /// Parses a byte size: an integer (bytes), optionally followed by one space and a unit
    /// `B`, `KB`, `MB`, `GB` (×1000) or `KiB`, `MiB`, `GiB` (×1024). Units are case-sensitive and
    /// decimals are not allowed. The result is > 0.
    ///
    /// `"32MiB"` → 33554432, `"8 MB"` → 8000000, `"65536"` → 65536.
    package static func parseSize(_ text: String) throws(ParseError) -> Int {
        var rest = Substring(text)
        let negative = rest.first == "-"
        if negative { rest = rest.dropFirst() }
        let digits = rest.prefix(while: isASCIIDigit)
        guard !digits.isEmpty else { throw .malformed }
        rest = rest.dropFirst(digits.count)
        var multiplier = 1
        if !rest.isEmpty {
            if rest.first == " " { rest = rest.dropFirst() }
            guard let unit = sizeUnits[String(rest)] else { throw .malformed }
            multiplier = unit
        }
        if negative { throw .notPositive }
        guard let number = Int(digits) else { throw .tooLarge }  // digits only: nil = overflow
        let (bytes, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw .tooLarge }
        guard bytes > 0 else { throw .notPositive }
        return bytes
    }

    /// Nanoseconds per duration unit.
    static let durationUnits: [String: Int64] = [
        "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000,
    ]

    /// Parses a duration: `0`, or an integer or decimal number followed by `ms`, `s`, `m` or `h`
    /// (one space before the unit is allowed). Negative values are rejected; precision finer than a
    /// nanosecond is truncated.
    ///
    /// `"200ms"`, `"1.5s"`, `"10s"`, `"2m"`, `"1h"`, `"0"`.
    package static func parseDuration(_ text: String) throws(ParseError) -> Duration {
        if text == "0" { return .zero }
        var rest = Substring(text)
        let negative = rest.first == "-"
        if negative { rest = rest.dropFirst() }
        let whole = rest.prefix(while: isASCIIDigit)
        guard !whole.isEmpty else { throw .malformed }
        rest = rest.dropFirst(whole.count)
        var fraction: Substring = ""
        if rest.first == "." {
            rest = rest.dropFirst()
            fraction = rest.prefix(while: isASCIIDigit)
            guard !fraction.isEmpty else { throw .malformed }
            rest = rest.dropFirst(fraction.count)
        }
        if rest.first == " " { rest = rest.dropFirst() }
        guard let unitNanos = durationUnits[String(rest)] else { throw .malformed }
        if negative { throw .negative }

        guard let wholeValue = Int64(whole) else { throw .tooLarge }
        let (wholeNanos, overflow) = wholeValue.multipliedReportingOverflow(by: unitNanos)
        guard !overflow else { throw .tooLarge }
        // Fraction digits past the 13th are below a nanosecond even for hours: ignore them.
        let fractionDigits = fraction.prefix(13)
        var fractionNanos: Int64 = 0
        if !fractionDigits.isEmpty, let numerator = Int64(fractionDigits) {
            var denominator: Int64 = 1
            for _ in fractionDigits { denominator *= 10 }
            // numerator < 10^13 and unitNanos ≤ 3.6e12: multiply at full width; the quotient is < unitNanos.
            let (high, low) = numerator.multipliedFullWidth(by: unitNanos)
            let (quotient, _) = denominator.dividingFullWidth((high: high, low: low))
            fractionNanos = quotient
        }
        let (total, overflow2) = wholeNanos.addingReportingOverflow(fractionNanos)
        guard !overflow2 else { throw .tooLarge }
        return .nanoseconds(total)
    }

    private static func isASCIIDigit(_ c: Character) -> Bool {
        c >= "0" && c <= "9" && c.isASCII
    }
}

#if canImport(Glibc)
    import Glibc
#endif

/// A wall-clock instant in UTC with nanosecond resolution, and the fixed formats the archive uses.
package struct UTCTime: Sendable, Equatable, Comparable {
    package var seconds: Int64
    package var nanoseconds: Int32

    package init(seconds: Int64, nanoseconds: Int32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    package static func now() -> UTCTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UTCTime(seconds: Int64(ts.tv_sec), nanoseconds: Int32(ts.tv_nsec))
    }

    package static func < (a: UTCTime, b: UTCTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    /// Calendar fields in UTC.
    package struct Fields: Sendable, Equatable {
        package var year, month, day, hour, minute, second, millisecond: Int
    }

    package var fields: Fields {
        // Days-to-civil (H. Hinnant), exact for the proleptic Gregorian calendar.
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return Fields(
            year: year, month: month, day: day, hour: secondOfDay / 3600,
            minute: secondOfDay / 60 % 60, second: secondOfDay % 60,
            millisecond: Int(nanoseconds) / 1_000_000)
    }

    /// `2026-11-26T19:00:00.123Z`
    package var iso8601: String {
        var out: [UInt8] = []
        appendISO8601(to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `iso8601`'s UTF-8 bytes (no intermediate strings).
    package func appendISO8601(to out: inout [UInt8]) {
        append(dateSeparator: UInt8(ascii: "-"), timeSeparator: UInt8(ascii: ":"), to: &out)
    }

    /// `20261126T190000.123Z`, the timestamp in batch object names.
    package var compact: String {
        var out: [UInt8] = []
        append(dateSeparator: nil, timeSeparator: nil, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `yyyy?MM?ddTHH?mm?ss.SSSZ`, with the given separators in place of `?` (none when nil).
    private func append(dateSeparator: UInt8?, timeSeparator: UInt8?, to out: inout [UInt8]) {
        let f = fields
        for (index, (value, width)) in [(f.year, 4), (f.month, 2), (f.day, 2)].enumerated() {
            if index > 0, let dateSeparator { out.append(dateSeparator) }
            Self.appendPadded(value, width: width, to: &out)
        }
        out.append(UInt8(ascii: "T"))
        for (index, value) in [f.hour, f.minute, f.second].enumerated() {
            if index > 0, let timeSeparator { out.append(timeSeparator) }
            Self.appendPadded(value, width: 2, to: &out)
        }
        out.append(UInt8(ascii: "."))
        Self.appendPadded(f.millisecond, width: 3, to: &out)
        out.append(UInt8(ascii: "Z"))
    }

    /// `Thu, 26 Nov 2026 19:00:00 GMT`: the IMF-fixdate of HTTP's `Date` header (RFC 9110 §5.6.7),
    /// which Azure's `x-ms-date` also takes.
    package var httpDate: String {
        let f = fields
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let weekday = Int(((days + 4) % 7 + 7) % 7)  // 1970-01-01 was a Thursday
        var out = Array(Self.weekdayNames[weekday].utf8)
        out.append(contentsOf: ", ".utf8)
        Self.appendPadded(f.day, width: 2, to: &out)
        out.append(contentsOf: " \(Self.monthNames[f.month - 1]) ".utf8)
        Self.appendPadded(f.year, width: 4, to: &out)
        for (index, value) in [f.hour, f.minute, f.second].enumerated() {
            out.append(index == 0 ? UInt8(ascii: " ") : UInt8(ascii: ":"))
            Self.appendPadded(value, width: 2, to: &out)
        }
        out.append(contentsOf: " GMT".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    /// `20261126T190000Z`: ISO 8601 basic format to the second, as AWS Signature V4's `x-amz-date`.
    package var amzDate: String {
        let f = fields
        var out: [UInt8] = []
        for (value, width) in [(f.year, 4), (f.month, 2), (f.day, 2)] { Self.appendPadded(value, width: width, to: &out) }
        out.append(UInt8(ascii: "T"))
        for value in [f.hour, f.minute, f.second] { Self.appendPadded(value, width: 2, to: &out) }
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    private static let weekdayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Appends the decimal digits of `value`, zero-padded on the left to at least `width`.
    package static func appendPadded(_ value: Int, width: Int, to out: inout [UInt8]) {
        guard value >= 0 else {
            out.append(contentsOf: String(value).utf8)
            return
        }
        var divisor = 1
        var digits = 1
        while digits < width || value / divisor >= 10 {
            divisor *= 10
            digits += 1
        }
        while divisor > 0 {
            out.append(0x30 + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    /// Parses RFC 3339 date-times (`T` or `t`, 0–9 fractional digits, `Z` or `±hh:mm`).
    package init?(rfc3339 text: String) {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard b[k] >= 0x30, b[k] <= 0x39 else { return nil }
                v = v * 10 + Int(b[k] - 0x30)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < b.count, b[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(0x2D), let month = digits(2), expect(0x2D), let day = digits(2),
            i < b.count, b[i] == 0x54 || b[i] == 0x74
        else { return nil }
        i += 1
        guard let hour = digits(2), expect(0x3A), let minute = digits(2), expect(0x3A), let second = digits(2),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var nanos = 0
        if expect(0x2E) {
            var count = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                if count < 9 { nanos = nanos * 10 + Int(b[i] - 0x30) }
                count += 1
                i += 1
            }
            guard count > 0 else { return nil }
            if count < 9 { for _ in count..<9 { nanos *= 10 } }
        }
        var offset = 0
        if i < b.count, b[i] == 0x5A || b[i] == 0x7A {
            i += 1
        } else if i < b.count, b[i] == 0x2B || b[i] == 0x2D {
            let sign = b[i] == 0x2D ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(0x3A), let om = digits(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        // Civil-to-days (H. Hinnant).
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * mp + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        self.init(
            seconds: Int64(days * 86_400 + hour * 3600 + minute * 60 + min(second, 59) - offset),
            nanoseconds: Int32(nanos))
    }
}

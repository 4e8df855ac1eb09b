import Foundation

/// Encodes records as the archive's JSON lines (design §3): fixed key order, payload as `data`
/// when it is valid UTF-8 and as `dataBase64` otherwise, so decoding always gives the exact bytes.
public enum RecordEncoder {
    /// The format version written into object metadata and sidecars.
    public static let formatVersion = "1"

    /// One JSON object followed by `\n`.
    public static func line(_ record: Record) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(record.payload.count + 256)
        appendObject(record, includePayload: true, to: &out)
        out.append(0x0A)
        return out
    }

    /// The raw format's `{id}.json` sidecar: the record without its payload, plus `formatVersion`.
    public static func sidecar(_ record: Record) -> [UInt8] {
        var out: [UInt8] = []
        appendObject(record, includePayload: false, to: &out)
        out.removeLast()   // the closing brace
        out.append(contentsOf: #","formatVersion":""#.utf8)
        out.append(contentsOf: formatVersion.utf8)
        out.append(contentsOf: "\"}\n".utf8)
        return out
    }

    /// The record as one JSON object; without the payload when `includePayload` is false.
    public static func appendObject(_ record: Record, includePayload: Bool, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"id":"#.utf8)
        appendString(record.id, to: &out)
        out.append(contentsOf: #","source":""#.utf8)
        out.append(contentsOf: record.source.rawValue.utf8)
        out.append(contentsOf: #"","route":"#.utf8)
        appendString(record.route, to: &out)
        out.append(contentsOf: #","receivedAt":""#.utf8)
        record.receivedAt.appendISO8601(to: &out)
        out.append(0x22)
        if let eventTime = record.eventTime {
            out.append(contentsOf: #","eventTime":"#.utf8)
            appendString(eventTime, to: &out)
        }
        out.append(contentsOf: #","attributes":{"#.utf8)
        for (index, attribute) in record.attributes.enumerated() {
            if index > 0 { out.append(0x2C) }
            appendString(attribute.key, to: &out)
            out.append(0x3A)
            appendString(attribute.value, to: &out)
        }
        out.append(contentsOf: #"},"meta":{"#.utf8)
        for (index, entry) in record.meta.enumerated() {
            if index > 0 { out.append(0x2C) }
            appendString(entry.key, to: &out)
            out.append(0x3A)
            switch entry.value {
            case .string(let s): appendString(s, to: &out)
            case .int(let n): out.append(contentsOf: String(n).utf8)
            case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
            }
        }
        out.append(0x7D)
        if includePayload {
            out.append(contentsOf: #","data":"#.utf8)
            if !appendUTF8String(record.payload, to: &out) {
                out.removeLast(#""data":"#.utf8.count)
                out.append(contentsOf: #""dataBase64":""#.utf8)
                out.append(contentsOf: Data(record.payload).base64EncodedString().utf8)
                out.append(0x22)
            }
        }
        out.append(0x7D)
    }

    static func appendString(_ string: String, to out: inout [UInt8]) {
        var string = string
        string.withUTF8 { _ = appendUTF8String($0, to: &out) }
    }

    /// Appends `bytes` as a JSON string literal if they are valid UTF-8; returns false (having
    /// appended nothing) otherwise.
    @discardableResult
    static func appendUTF8String(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) -> Bool {
        if let valid = bytes.withContiguousStorageIfAvailable({ appendUTF8String($0, to: &out) }) {
            return valid
        }
        return Array(bytes).withUnsafeBufferPointer { appendUTF8String($0, to: &out) }
    }

    /// Two passes: the first validates and measures, the second writes straight into `out`'s
    /// storage, so a payload full of quotes costs no more appends than one without.
    static func appendUTF8String(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) -> Bool {
        guard let length = escapedLength(bytes) else { return false }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: length + 2))
        out.withUnsafeMutableBufferPointer { buffer in
            writeEscaped(bytes, to: buffer.baseAddress! + start)
        }
        return true
    }

    /// The length of `bytes` as JSON string content (without the quotes), or nil if they are not
    /// valid UTF-8.
    private static func escapedLength(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        var length = bytes.count
        var i = 0
        while i < bytes.count {
            i = skipPlainWords(bytes, from: i)
            guard i < bytes.count else { break }
            let byte = bytes[i]
            if byte >= 0x80 {
                guard let sequence = validSequenceLength(bytes, at: i) else { return nil }
                i += sequence
                continue
            }
            switch byte {
            case 0x22, 0x5C, 0x0A, 0x0D, 0x09: length += 1
            case ..<0x20: length += 5
            default: break
            }
            i += 1
        }
        return length
    }

    /// Writes `"`, the escaped content of valid UTF-8 `bytes`, and `"` at `target`.
    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to target: UnsafeMutablePointer<UInt8>) {
        var target = target
        func put(_ byte: UInt8) {
            target.pointee = byte
            target += 1
        }
        func copy(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            target.update(from: bytes.baseAddress! + range.lowerBound, count: range.count)
            target += range.count
        }
        put(0x22)
        var runStart = 0
        var i = 0
        while i < bytes.count {
            i = skipPlainWords(bytes, from: i)
            guard i < bytes.count else { break }
            let byte = bytes[i]
            if byte >= 0x20 && byte != 0x22 && byte != 0x5C {
                i += 1
                continue
            }
            copy(runStart..<i)
            put(0x5C)
            switch byte {
            case 0x22, 0x5C: put(byte)
            case 0x0A: put(0x6E)
            case 0x0D: put(0x72)
            case 0x09: put(0x74)
            default:
                let hex = Array("0123456789abcdef".utf8)
                for digit in [0x75, 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]] as [UInt8] { put(digit) }
            }
            i += 1
            runStart = i
        }
        copy(runStart..<bytes.count)
        put(0x22)
    }

    /// The first index at or after `i` of an 8-byte word that may hold a byte needing attention
    /// (a control character, `"`, `\`, or a non-ASCII byte); checks a word at a time. The word
    /// tests can flag a plain byte too (a borrow), never miss one: the caller looks byte by byte.
    private static func skipPlainWords(_ bytes: UnsafeBufferPointer<UInt8>, from i: Int) -> Int {
        guard let base = bytes.baseAddress else { return i }
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ v: UInt64) -> Bool { (v &- ones) & ~v & highs != 0 }
        var i = i
        while i + 8 <= bytes.count {
            let word = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
            let nonASCII = word & highs != 0
            let control = (word &- 0x2020_2020_2020_2020) & ~word & highs != 0
            if nonASCII || control || hasZeroByte(word ^ 0x2222_2222_2222_2222) || hasZeroByte(word ^ 0x5C5C_5C5C_5C5C_5C5C) {
                return i
            }
            i += 8
        }
        return i
    }

    /// The length of the well-formed UTF-8 sequence starting at `i` (RFC 3629), or nil.
    private static func validSequenceLength(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> Int? {
        let lead = b[i]
        let n = b.count
        func cont(_ k: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
            i + k < n && b[i + k] >= low && b[i + k] <= high
        }
        switch lead {
        case 0xC2...0xDF: return cont(1) ? 2 : nil
        case 0xE0: return cont(1, 0xA0) && cont(2) ? 3 : nil
        case 0xE1...0xEC, 0xEE...0xEF: return cont(1) && cont(2) ? 3 : nil
        case 0xED: return cont(1, 0x80, 0x9F) && cont(2) ? 3 : nil
        case 0xF0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : nil
        case 0xF1...0xF3: return cont(1) && cont(2) && cont(3) ? 4 : nil
        case 0xF4: return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : nil
        default: return nil
        }
    }
}

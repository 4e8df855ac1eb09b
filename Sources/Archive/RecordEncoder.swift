import Foundation

/// Encodes records as the archive's JSON lines (docs/archive-format.md#records): fixed key order,
/// payload as `data` when it is valid UTF-8 and as `dataBase64` otherwise, so decoding always gives
/// the exact bytes.
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
    /// storage. Both go a word at a time through plain text and, in a word that holds anything
    /// else, byte by byte with a table instead of branches, so text dense with quotes (JSON
    /// payloads) stays cheap.
    static func appendUTF8String(_ bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) -> Bool {
        guard let length = escapedLength(bytes) else { return false }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: length + 2))
        out.withUnsafeMutableBufferPointer { buffer in
            writeEscaped(bytes, to: buffer.baseAddress! + start)
        }
        return true
    }

    /// Extra bytes each ASCII byte takes when escaped: 1 for `"`, `\`, LF, CR and tab (`\n`…),
    /// 5 for other control characters (`\u00XX`), 0 for the rest.
    private static let escapeExtra: [UInt8] = (0..<128).map { byte in
        switch byte {
        case 0x22, 0x5C, 0x0A, 0x0D, 0x09: 1
        case ..<0x20: 5
        default: 0
        }
    }

    /// The length of `bytes` as JSON string content (without the quotes), or nil if they are not
    /// valid UTF-8.
    private static func escapedLength(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = bytes.baseAddress else { return 0 }
        let n = bytes.count
        var extra = 0
        var i = 0
        return escapeExtra.withUnsafeBufferPointer { table -> Int? in
            while i < n {
                if i + 8 <= n && !mayNeedAttention(word(base, i), nonASCII: true) {
                    i += 8
                    continue
                }
                let end = min(i + 8, n)
                while i < end {
                    let byte = base[i]
                    if byte >= 0x80 {
                        guard let sequence = validSequenceLength(bytes, at: i) else { return nil }
                        i += sequence
                        break
                    }
                    extra += Int(table[Int(byte)])
                    i += 1
                }
            }
            return n + extra
        }
    }

    /// Writes `"`, the escaped content of valid UTF-8 `bytes`, and `"` at `target`.
    private static func writeEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to target: UnsafeMutablePointer<UInt8>) {
        var target = target
        target.pointee = 0x22
        target += 1
        if let base = bytes.baseAddress {
            let n = bytes.count
            var i = 0
            escapeExtra.withUnsafeBufferPointer { table in
                while i < n {
                    if i + 8 <= n && !mayNeedAttention(word(base, i), nonASCII: false) {
                        UnsafeMutableRawPointer(target).storeBytes(of: word(base, i), as: UInt64.self)
                        target += 8
                        i += 8
                        continue
                    }
                    let end = min(i + 8, n)
                    while i < end {
                        let byte = base[i]
                        i += 1
                        if byte >= 0x80 || table[Int(byte)] == 0 {
                            target.pointee = byte
                            target += 1
                            continue
                        }
                        target.pointee = 0x5C
                        switch byte {
                        case 0x22, 0x5C: target[1] = byte
                        case 0x0A: target[1] = UInt8(ascii: "n")
                        case 0x0D: target[1] = UInt8(ascii: "r")
                        case 0x09: target[1] = UInt8(ascii: "t")
                        default:
                            let hex = Array("0123456789abcdef".utf8)
                            for (k, digit) in [UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]].enumerated() {
                                target[1 + k] = digit
                            }
                        }
                        target += 1 + Int(table[Int(byte)])
                    }
                }
            }
        }
        target.pointee = 0x22
    }

    @inline(__always)
    private static func word(_ base: UnsafePointer<UInt8>, _ i: Int) -> UInt64 {
        UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
    }

    /// Whether an 8-byte word may hold a control character, `"` or `\` (or, with `nonASCII`, a
    /// byte of 0x80 or more). The tests can flag a plain word too (a borrow), never miss one: the
    /// caller then looks byte by byte.
    @inline(__always)
    private static func mayNeedAttention(_ word: UInt64, nonASCII: Bool) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        func hasZeroByte(_ v: UInt64) -> Bool { (v &- ones) & ~v & highs != 0 }
        return (nonASCII && word & highs != 0)
            || (word &- 0x2020_2020_2020_2020) & ~word & highs != 0
            || hasZeroByte(word ^ 0x2222_2222_2222_2222) || hasZeroByte(word ^ 0x5C5C_5C5C_5C5C_5C5C)
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

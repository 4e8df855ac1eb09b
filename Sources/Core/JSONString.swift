/// JSON string literals (RFC 8259 §7) written straight into a byte buffer: `"`, `\`, LF, CR and tab
/// as two-character escapes, other control characters as `\u00XX`, everything else as is. The
/// archive's records, Event Grid's validation answer and the JSON log lines all use it.
package enum JSONString {
    /// Appends `string` as a JSON string literal.
    package static func append(_ string: String, to out: inout [UInt8]) {
        var string = string
        string.withUTF8 { _ = append(utf8: $0, to: &out) }
    }

    /// Appends `bytes` as a JSON string literal if they are valid UTF-8; returns false (having
    /// appended nothing) otherwise.
    @discardableResult
    package static func append(utf8 bytes: [UInt8], to out: inout [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { append(utf8: $0, to: &out) }
    }

    /// Two passes: the first validates and measures, the second writes straight into `out`'s
    /// storage. Both go a word at a time through plain text and, in a word that holds anything
    /// else, byte by byte with a table instead of branches, so text dense with quotes (JSON
    /// payloads) stays cheap.
    @discardableResult
    package static func append(utf8 bytes: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) -> Bool {
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
                            let hex = Hex.lowercaseDigits
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

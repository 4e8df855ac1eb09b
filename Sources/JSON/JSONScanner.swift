import PersistorCore

// Strict RFC 8259 JSON scanner that keeps the exact source byte range of every value.
//
// Event Grid batches are archived element by element exactly as received, so the parser never
// re-serialises anything: callers slice `bytes[node.range]`. The same parser reads Pub/Sub push
// envelopes. It runs on the request hot path and must survive arbitrary (fuzzed) input, so:
//   * the scanner is a single iterative loop with an explicit container stack (no recursion, so
//     no stack overflow however deep the input is; depth is capped by `maxDepth` anyway),
//   * all reads go through an `UnsafeRawPointer` with explicit bounds checks against the length,
//   * strings are validated as UTF-8 while scanning (8 bytes at a time for plain ASCII runs) and
//     an escape-free string becomes a `String` with one initialiser call on the byte slice.

/// A JSON value with the byte range of its source text (range excludes surrounding whitespace).
///
/// For strings the range includes the quotes, for containers the brackets/braces.
package struct JSONNode: Sendable {
    package var value: JSONValue
    /// Offsets into the scanned buffer.
    package var range: Range<Int>

    package init(value: JSONValue, range: Range<Int>) {
        self.value = value
        self.range = range
    }
}

package indirect enum JSONValue: Sendable {
    /// Members in source order; duplicate keys are kept.
    case object([(key: String, value: JSONNode)])
    case array([JSONNode])
    /// The decoded string (escapes resolved; a lone surrogate escape becomes U+FFFD).
    case string(String)
    /// The exact source text, e.g. "1e3", "-0.5".
    case number(String)
    case bool(Bool)
    case null
    /// A value deeper than `materializeDepth`: validated, but not built; only its range is known.
    case unmaterialized
}

extension JSONNode {
    /// The value of the first member named `key`, if this node is a (materialized) object.
    package subscript(key: String) -> JSONNode? {
        guard case .object(let members) = value else { return nil }
        for member in members where member.key == key {
            return member.value
        }
        return nil
    }

    /// The decoded string, if this node is a string.
    package var stringValue: String? {
        if case .string(let s) = value { return s }
        return nil
    }

    /// The number as an `Int`, only when the number's source text is integral
    /// (`-?[0-9]+`: no fraction, no exponent, so `1.0` and `1e3` give nil) and fits in `Int`.
    package var intValue: Int? {
        guard case .number(let text) = value else { return nil }
        var sawDigit = false
        for (index, unit) in text.utf8.enumerated() {
            if unit >= UInt8(ascii: "0") && unit <= UInt8(ascii: "9") {
                sawDigit = true
            } else if !(index == 0 && unit == UInt8(ascii: "-")) {
                return nil
            }
        }
        guard sawDigit else { return nil }
        return Int(text)
    }

    /// True if this node is a materialized object (an `.unmaterialized` node reports false).
    package var isObject: Bool {
        if case .object = value { return true }
        return false
    }
}

/// A parse failure: where and why.
///
/// Reasons used (stable strings, tests depend on them):
/// - "empty input": no value at all (empty or whitespace-only input)
/// - "byte order mark": the input starts with a UTF-8 BOM (EF BB BF)
/// - "unexpected character": a byte that cannot start/continue the expected token (this includes
///   `+1`, `.5`, `NaN`, `True`, single quotes, comments, non-ASCII bytes outside strings)
/// - "unexpected end of input": the input ends inside an array/object or where a value is due
/// - "trailing comma": a `,` directly followed by `]` or `}` (offset of the comma)
/// - "expected colon": an object key not followed by `:`
/// - "leading zero": a number like `01` or `-01` (offset of the zero)
/// - "invalid number": e.g. `-`, `1.`, `1e`, `1e+` (offset where a digit was required)
/// - "invalid literal": a misspelt or truncated `true`/`false`/`null` (offset of the first bad byte)
/// - "unterminated string": the input ends inside a string (offset = input length)
/// - "control character in string": a raw byte 0x00...0x1F inside a string
/// - "invalid escape": an unknown escape or bad `\u` hex digits (offset of the backslash)
/// - "invalid UTF-8": an ill-formed UTF-8 sequence inside a string (offset of its first byte)
/// - "nesting too deep": more than `maxDepth` nested containers (offset of the opening bracket)
/// - "trailing data": anything but whitespace after the top-level value
package struct JSONError: Error, Equatable, Sendable {
    /// Byte offset of the problem.
    package var offset: Int
    package var reason: String

    package init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }
}

package enum JSONScanner {
    /// Parses exactly one JSON text (leading/trailing whitespace allowed, nothing else).
    ///
    /// Depth: the top-level value has depth 0; the elements of an array (or the member values of
    /// an object) at depth `d` have depth `d + 1`.
    ///
    /// - `materializeDepth`: every value whose depth is `<= materializeDepth` is built
    ///   (objects/arrays get their children, strings are decoded, numbers keep their text). Every
    ///   value whose depth is `> materializeDepth` (scalars included) is fully validated but is
    ///   returned as `.unmaterialized` with its exact range, and its own children are not
    ///   allocated at all. Example with `materializeDepth: 1` and `[{"a":{"b":[1,2]}}]`: the
    ///   array (depth 0) and its object element (depth 1) are materialized, the member value
    ///   `{"b":[1,2]}` (depth 2) is `.unmaterialized`. Keys of a materialized object are always
    ///   decoded. A negative value leaves even the top-level value unmaterialized.
    /// - `maxDepth`: at most `maxDepth` arrays/objects may be open at once, i.e. a container at
    ///   depth `d` is allowed iff `d < maxDepth` (scalars are never rejected for depth). With the
    ///   default 256, 256 nested `[` are accepted and the 257th throws "nesting too deep".
    ///   Parsing is iterative, so any depth is safe while scanning; note only that a materialized
    ///   tree is released recursively, so very large `maxDepth` values should be paired with a
    ///   small `materializeDepth`.
    package static func parse(
        _ bytes: UnsafeRawBufferPointer, materializeDepth: Int = .max,
        maxDepth: Int = 256
    ) throws(JSONError) -> JSONNode {
        guard let base = bytes.baseAddress, bytes.count > 0 else {
            throw JSONError(offset: 0, reason: "empty input")
        }
        var parser = Parser(
            base: base, count: bytes.count,
            materializeDepth: materializeDepth, maxDepth: maxDepth)
        return try parser.parseDocument()
    }

    /// Parses exactly one JSON text; see `parse(_:materializeDepth:maxDepth:)` on raw buffers.
    package static func parse(
        _ bytes: [UInt8], materializeDepth: Int = .max,
        maxDepth: Int = 256
    ) throws(JSONError) -> JSONNode {
        let result: Result<JSONNode, JSONError> = bytes.withUnsafeBytes { buffer in
            do throws(JSONError) {
                return .success(
                    try parse(
                        buffer, materializeDepth: materializeDepth,
                        maxDepth: maxDepth))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

// MARK: - Implementation

private enum ASCII {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
    static let space = UInt8(ascii: " ")
    static let tab = UInt8(ascii: "\t")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
}

private struct Parser {
    /// An open array or object.
    struct Frame {
        var isObject: Bool
        /// Whether this container's value is being built (children appended to `values`).
        var materialized: Bool
        /// Offset of the opening bracket.
        var start: Int
        /// Index in `values` where this container's children begin.
        var valueBase: Int
        /// Index in `keys` where this container's member keys begin.
        var keyBase: Int
    }

    let base: UnsafeRawPointer
    let count: Int
    let materializeDepth: Int
    let maxDepth: Int

    /// Current read offset.
    var index = 0
    var frames: [Frame] = []
    /// Finished children of the open materialized containers, innermost last.
    var values: [JSONNode] = []
    /// Keys of the open materialized objects, parallel to their entries in `values`.
    var keys: [String] = []
    /// Reused buffer for decoding strings that contain escapes.
    var scratch: [UInt8] = []

    init(base: UnsafeRawPointer, count: Int, materializeDepth: Int, maxDepth: Int) {
        self.base = base
        self.count = count
        self.materializeDepth = materializeDepth
        self.maxDepth = maxDepth
    }

    @inline(__always)
    func byte(_ offset: Int) -> UInt8 {
        base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < count {
            let b = byte(index)
            guard
                b == ASCII.space || b == ASCII.lineFeed || b == ASCII.carriageReturn
                    || b == ASCII.tab
            else { return }
            index &+= 1
        }
    }

    @inline(__always)
    static func isDigit(_ b: UInt8) -> Bool {
        b &- ASCII.zero < 10
    }

    // MARK: Structure

    mutating func parseDocument() throws(JSONError) -> JSONNode {
        if count >= 3 && byte(0) == 0xEF && byte(1) == 0xBB && byte(2) == 0xBF {
            throw JSONError(offset: 0, reason: "byte order mark")
        }
        skipWhitespace()
        if index == count {
            throw JSONError(offset: count, reason: "empty input")
        }

        valueLoop: while true {
            // Expecting a value (after a '[', ',', ':' or at the top level).
            skipWhitespace()
            guard index < count else {
                throw JSONError(offset: count, reason: "unexpected end of input")
            }
            let depth = frames.count
            let materialize = depth <= materializeDepth
            let start = index
            var node: JSONNode
            let c = byte(index)
            switch c {
            case ASCII.quote:
                let text = try scanString(decode: materialize)
                node = JSONNode(
                    value: materialize ? .string(text) : .unmaterialized,
                    range: start..<index)
            case ASCII.openBrace, ASCII.openBracket:
                if depth >= maxDepth {
                    throw JSONError(offset: index, reason: "nesting too deep")
                }
                let isObject = c == ASCII.openBrace
                frames.append(
                    Frame(
                        isObject: isObject, materialized: materialize, start: index,
                        valueBase: values.count, keyBase: keys.count))
                index &+= 1
                skipWhitespace()
                guard index < count else {
                    throw JSONError(offset: count, reason: "unexpected end of input")
                }
                if byte(index) == (isObject ? ASCII.closeBrace : ASCII.closeBracket) {
                    index &+= 1
                    node = closeContainer()
                } else {
                    if isObject { try readKey() }
                    continue valueLoop
                }
            case ASCII.minus, ASCII.zero...ASCII.nine:
                try scanNumber()
                node = JSONNode(
                    value: materialize ? .number(text(start..<index)) : .unmaterialized,
                    range: start..<index)
            case UInt8(ascii: "t"):
                try matchLiteral("true")
                node = JSONNode(
                    value: materialize ? .bool(true) : .unmaterialized,
                    range: start..<index)
            case UInt8(ascii: "f"):
                try matchLiteral("false")
                node = JSONNode(
                    value: materialize ? .bool(false) : .unmaterialized,
                    range: start..<index)
            case UInt8(ascii: "n"):
                try matchLiteral("null")
                node = JSONNode(value: materialize ? .null : .unmaterialized, range: start..<index)
            default:
                throw JSONError(offset: index, reason: "unexpected character")
            }

            // A value is complete: attach it to its container, then handle ',' or closings.
            while true {
                guard let top = frames.last else {
                    skipWhitespace()
                    if index != count {
                        throw JSONError(offset: index, reason: "trailing data")
                    }
                    return node
                }
                if top.materialized {
                    values.append(node)
                }
                skipWhitespace()
                guard index < count else {
                    throw JSONError(offset: count, reason: "unexpected end of input")
                }
                let closing = top.isObject ? ASCII.closeBrace : ASCII.closeBracket
                let c = byte(index)
                if c == ASCII.comma {
                    let comma = index
                    index &+= 1
                    skipWhitespace()
                    guard index < count else {
                        throw JSONError(offset: count, reason: "unexpected end of input")
                    }
                    if byte(index) == closing {
                        throw JSONError(offset: comma, reason: "trailing comma")
                    }
                    if top.isObject { try readKey() }
                    continue valueLoop
                } else if c == closing {
                    index &+= 1
                    node = closeContainer()
                } else {
                    throw JSONError(offset: index, reason: "unexpected character")
                }
            }
        }
    }

    /// Reads `"key"` and the following `:`; `index` is at the key's expected start.
    mutating func readKey() throws(JSONError) {
        guard index < count else {
            throw JSONError(offset: count, reason: "unexpected end of input")
        }
        guard byte(index) == ASCII.quote else {
            throw JSONError(offset: index, reason: "unexpected character")
        }
        let materialized = frames[frames.count &- 1].materialized
        let key = try scanString(decode: materialized)
        if materialized {
            keys.append(key)
        }
        skipWhitespace()
        guard index < count else {
            throw JSONError(offset: count, reason: "unexpected end of input")
        }
        guard byte(index) == ASCII.colon else {
            throw JSONError(offset: index, reason: "expected colon")
        }
        index &+= 1
    }

    /// Pops the innermost container; `index` is just past its closing bracket.
    mutating func closeContainer() -> JSONNode {
        let frame = frames.removeLast()
        let range = frame.start..<index
        guard frame.materialized else {
            return JSONNode(value: .unmaterialized, range: range)
        }
        let childCount = values.count &- frame.valueBase
        if frame.isObject {
            var members: [(key: String, value: JSONNode)] = []
            members.reserveCapacity(childCount)
            for k in 0..<childCount {
                members.append((key: keys[frame.keyBase &+ k], value: values[frame.valueBase &+ k]))
            }
            keys.removeLast(childCount)
            values.removeLast(childCount)
            return JSONNode(value: .object(members), range: range)
        } else {
            let elements = Array(values[frame.valueBase...])
            values.removeLast(childCount)
            return JSONNode(value: .array(elements), range: range)
        }
    }

    // MARK: Scalars

    func text(_ range: Range<Int>) -> String {
        String(
            decoding: UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count),
            as: UTF8.self)
    }

    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`; `index` is at the first byte.
    mutating func scanNumber() throws(JSONError) {
        if byte(index) == ASCII.minus {
            index &+= 1
        }
        guard index < count else {
            throw JSONError(offset: index, reason: "invalid number")
        }
        let first = byte(index)
        if first == ASCII.zero {
            index &+= 1
            if index < count && Self.isDigit(byte(index)) {
                throw JSONError(offset: index &- 1, reason: "leading zero")
            }
        } else if Self.isDigit(first) {
            index &+= 1
            skipDigits()
        } else {
            throw JSONError(offset: index, reason: "invalid number")
        }
        if index < count && byte(index) == ASCII.dot {
            index &+= 1
            try requireDigits()
        }
        if index < count && (byte(index) | 0x20) == UInt8(ascii: "e") {
            index &+= 1
            if index < count && (byte(index) == ASCII.plus || byte(index) == ASCII.minus) {
                index &+= 1
            }
            try requireDigits()
        }
    }

    @inline(__always)
    mutating func skipDigits() {
        while index < count && Self.isDigit(byte(index)) {
            index &+= 1
        }
    }

    @inline(__always)
    mutating func requireDigits() throws(JSONError) {
        guard index < count && Self.isDigit(byte(index)) else {
            throw JSONError(offset: index, reason: "invalid number")
        }
        index &+= 1
        skipDigits()
    }

    mutating func matchLiteral(_ literal: StaticString) throws(JSONError) {
        let expected = literal.utf8Start
        let length = literal.utf8CodeUnitCount
        for k in 0..<length {
            let offset = index &+ k
            guard offset < count && byte(offset) == expected[k] else {
                throw JSONError(offset: offset, reason: "invalid literal")
            }
        }
        index &+= length
    }

    // MARK: Strings

    /// True if any of the 8 bytes is '"', '\\', < 0x20 or >= 0x80 (exact, no false negatives).
    @inline(__always)
    static func needsAttention(_ word: UInt64) -> Bool {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quotes = word ^ (ones &* 0x22)
        let backslashes = word ^ (ones &* 0x5C)
        let hasQuote = (quotes &- ones) & ~quotes
        let hasBackslash = (backslashes &- ones) & ~backslashes
        let hasControl = (word &- ones &* 0x20) & ~word
        return ((hasQuote | hasBackslash | hasControl) & highs) | (word & highs) != 0
    }

    /// Scans a string whose opening quote is at `index`, leaving `index` past the closing quote.
    /// Returns the decoded contents when `decode` is true, otherwise "" (validation only).
    mutating func scanString(decode: Bool) throws(JSONError) -> String {
        let contentStart = index &+ 1
        var j = contentStart
        var runStart = contentStart
        var escaped = false
        while true {
            while j &+ 8 <= count {
                let word = base.loadUnaligned(fromByteOffset: j, as: UInt64.self)
                if Self.needsAttention(word) { break }
                j &+= 8
            }
            var b: UInt8
            while true {
                guard j < count else {
                    throw JSONError(offset: count, reason: "unterminated string")
                }
                b = byte(j)
                guard b >= 0x20 && b < 0x80 && b != ASCII.quote && b != ASCII.backslash else {
                    break
                }
                j &+= 1
            }
            if b == ASCII.quote {
                break
            } else if b == ASCII.backslash {
                if decode {
                    if !escaped {
                        escaped = true
                        scratch.removeAll(keepingCapacity: true)
                    }
                    appendRaw(runStart..<j)
                }
                j = try scanEscape(at: j, decode: decode)
                runStart = j
            } else if b < 0x20 {
                throw JSONError(offset: j, reason: "control character in string")
            } else {
                j = try validateUTF8Sequence(at: j)
            }
        }
        index = j &+ 1
        guard decode else { return "" }
        if escaped {
            appendRaw(runStart..<j)
            return String(decoding: scratch, as: UTF8.self)
        }
        return text(contentStart..<j)
    }

    @inline(__always)
    mutating func appendRaw(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        scratch.append(
            contentsOf: UnsafeRawBufferPointer(
                start: base + range.lowerBound,
                count: range.count))
    }

    /// Validates the escape whose backslash is at `start`; returns the offset just past it.
    mutating func scanEscape(at start: Int, decode: Bool) throws(JSONError) -> Int {
        let k = start &+ 1
        guard k < count else {
            throw JSONError(offset: count, reason: "unterminated string")
        }
        let decoded: UInt8
        switch byte(k) {
        case ASCII.quote: decoded = ASCII.quote
        case ASCII.backslash: decoded = ASCII.backslash
        case ASCII.slash: decoded = ASCII.slash
        case UInt8(ascii: "b"): decoded = 0x08
        case UInt8(ascii: "f"): decoded = 0x0C
        case UInt8(ascii: "n"): decoded = 0x0A
        case UInt8(ascii: "r"): decoded = 0x0D
        case UInt8(ascii: "t"): decoded = 0x09
        case UInt8(ascii: "u"):
            var scalar = try hex4(at: k &+ 1, escapeStart: start)
            var next = k &+ 5
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                // A high surrogate combines only with an immediately following `\uDC00...\uDFFF`;
                // anything else leaves it lone (U+FFFD) and the next bytes are scanned normally.
                if next &+ 6 <= count && byte(next) == ASCII.backslash
                    && byte(next &+ 1) == UInt8(ascii: "u"),
                    let low = hex4IfValid(at: next &+ 2), low >= 0xDC00 && low <= 0xDFFF
                {
                    scalar = 0x10000 &+ ((scalar &- 0xD800) << 10) &+ (low &- 0xDC00)
                    next &+= 6
                } else {
                    scalar = 0xFFFD
                }
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                scalar = 0xFFFD
            }
            if decode { appendScalar(scalar) }
            return next
        default:
            throw JSONError(offset: start, reason: "invalid escape")
        }
        if decode { scratch.append(decoded) }
        return k &+ 1
    }

    func hex4(at offset: Int, escapeStart: Int) throws(JSONError) -> UInt32 {
        var value: UInt32 = 0
        for k in 0..<4 {
            let position = offset &+ k
            guard position < count else {
                throw JSONError(offset: count, reason: "unterminated string")
            }
            guard let digit = Hex.value(byte(position)) else {
                throw JSONError(offset: escapeStart, reason: "invalid escape")
            }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    /// Four hex digits at `offset` (caller guarantees they are in bounds), or nil.
    func hex4IfValid(at offset: Int) -> UInt32? {
        var value: UInt32 = 0
        for k in 0..<4 {
            guard let digit = Hex.value(byte(offset &+ k)) else { return nil }
            value = value << 4 | UInt32(digit)
        }
        return value
    }

    mutating func appendScalar(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(truncatingIfNeeded: scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(truncatingIfNeeded: 0xC0 | scalar >> 6))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(truncatingIfNeeded: 0xE0 | scalar >> 12))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(truncatingIfNeeded: 0xF0 | scalar >> 18))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(truncatingIfNeeded: 0x80 | scalar & 0x3F))
        }
    }

    /// Validates one multi-byte UTF-8 sequence whose lead byte (>= 0x80) is at `start`
    /// (Unicode Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF, no truncation).
    /// Returns the offset just past it.
    func validateUTF8Sequence(at start: Int) throws(JSONError) -> Int {
        let lead = byte(start)
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF:
            length = 2
        case 0xE0...0xEF:
            length = 3
            if lead == 0xE0 { low = 0xA0 }
            if lead == 0xED { high = 0x9F }
        case 0xF0...0xF4:
            length = 4
            if lead == 0xF0 { low = 0x90 }
            if lead == 0xF4 { high = 0x8F }
        default:
            throw JSONError(offset: start, reason: "invalid UTF-8")
        }
        guard start &+ length <= count else {
            throw JSONError(offset: start, reason: "invalid UTF-8")
        }
        let second = byte(start &+ 1)
        guard second >= low && second <= high else {
            throw JSONError(offset: start, reason: "invalid UTF-8")
        }
        for k in 2..<length where byte(start &+ k) & 0xC0 != 0x80 {
            throw JSONError(offset: start, reason: "invalid UTF-8")
        }
        return start &+ length
    }
}

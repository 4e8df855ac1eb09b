import PersistorCore

/// Object key directories from a template such as `{route}/{yyyy}/{MM}/{dd}/{HH}` or
/// `dt={yyyy}-{MM}-{dd}/hour={HH}`. Tokens: `{route} {source} {yyyy} {MM} {dd} {HH} {mm}` and
/// `{attr:NAME}`. Values that come from messages are made key-safe (see `keySafe`), and every
/// expanded segment fits a file name (see `maxSegmentBytes`).
package struct PathTemplate: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case literal(String)
        /// A `/` of the template: segment bounds are checked there.
        case separator
        case route, source, year, month, day, hour, minute
        case attribute(String)
    }

    let parts: [Part]
    package let text: String

    package struct ParseError: Error, CustomStringConvertible, Equatable {
        package var description: String
    }

    package init(_ text: String) throws(ParseError) {
        self.text = text
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(text)
        while let c = rest.first {
            if c == "}" { throw ParseError(description: "unmatched '}' in path template '\(text)'") }
            guard c == "{" else {
                literal.append(c)
                rest = rest.dropFirst()
                continue
            }
            guard let close = rest.firstIndex(of: "}") else {
                throw ParseError(description: "unclosed '{' in path template '\(text)'")
            }
            let token = rest[rest.index(after: rest.startIndex)..<close]
            rest = rest[rest.index(after: close)...]
            if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
            switch token {
            case "route": parts.append(.route)
            case "source": parts.append(.source)
            case "yyyy": parts.append(.year)
            case "MM": parts.append(.month)
            case "dd": parts.append(.day)
            case "HH": parts.append(.hour)
            case "mm": parts.append(.minute)
            default:
                guard token.hasPrefix("attr:"), token.count > 5 else {
                    throw ParseError(
                        description:
                            "unknown token '{\(token)}' in path template '\(text)'; known: {route} {source} {yyyy} {MM} {dd} {HH} {mm} {attr:NAME}")
                }
                parts.append(.attribute(String(token.dropFirst(5))))
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        for part in parts {
            guard case .literal(let l) = part else { continue }
            guard l.unicodeScalars.allSatisfy({ Self.isSafe($0) || $0 == "/" || $0 == "=" }) else {
                throw ParseError(description: "path template '\(text)' may only contain A-Z a-z 0-9 . _ - = / outside tokens")
            }
        }
        let probe = parts.map { part -> String in if case .literal(let l) = part { return l } else { return "x" } }.joined()
        if probe.hasPrefix("/") || probe.hasSuffix("/")
            || probe.split(separator: "/", omittingEmptySubsequences: false)
                .contains(where: { $0.isEmpty || $0 == "." || $0 == ".." })
        {
            throw ParseError(description: "path template '\(text)' must be relative, without empty, '.' or '..' segments")
        }
        // Literals split at `/`, so expansion sees where each segment ends.
        self.parts = parts.flatMap { part -> [Part] in
            guard case .literal(let l) = part, l.contains("/") else { return [part] }
            return l.split(separator: "/", omittingEmptySubsequences: false).enumerated().flatMap { index, piece -> [Part] in
                (index > 0 ? [.separator] : []) + (piece.isEmpty ? [] : [.literal(String(piece))])
            }
        }
    }

    /// The longest segment an expansion writes: NAME_MAX of Linux file systems (and well inside
    /// the clouds' 1024-byte keys). Two `{attr:…}` tokens of 128 bytes each in one segment would
    /// exceed it, and such a record could never be written.
    package static let maxSegmentBytes = 255
    /// Hex digits of the digest that ends a shortened segment.
    static let segmentDigestDigits = 16

    /// The directory for a record at the given time (UTC).
    package func expand(
        route: String, source: RecordSource, time: UTCTime,
        attribute: (String) -> String?
    ) -> String {
        let f = time.fields
        var out: [UInt8] = []
        out.reserveCapacity(64)
        var segmentStart = 0
        for part in parts {
            switch part {
            case .literal(let l): out.append(contentsOf: l.utf8)
            case .separator:
                Self.bound(&out, segmentStart: segmentStart)
                out.append(UInt8(ascii: "/"))
                segmentStart = out.count
            case .route: out.append(contentsOf: Self.keySafe(route).utf8)
            case .source: out.append(contentsOf: source.rawValue.utf8)
            case .year: UTCTime.appendPadded(f.year, width: 4, to: &out)
            case .month: UTCTime.appendPadded(f.month, width: 2, to: &out)
            case .day: UTCTime.appendPadded(f.day, width: 2, to: &out)
            case .hour: UTCTime.appendPadded(f.hour, width: 2, to: &out)
            case .minute: UTCTime.appendPadded(f.minute, width: 2, to: &out)
            case .attribute(let name): out.append(contentsOf: Self.keySafe(attribute(name)).utf8)
            }
        }
        Self.bound(&out, segmentStart: segmentStart)
        return String(decoding: out, as: UTF8.self)
    }

    @inline(__always)
    private static func bound(_ out: inout [UInt8], segmentStart: Int) {
        if out.count - segmentStart > maxSegmentBytes { shorten(&out, segmentStart: segmentStart) }
    }

    /// Replaces an over-long last segment by its start and `-` plus a digest of the whole segment,
    /// `maxSegmentBytes` long at most, so that distinct segments stay distinct. The cut never
    /// splits a `%XX` escape.
    static func shorten(_ out: inout [UInt8], segmentStart: Int) {
        let digest = KeyDigest.hex([Array(out[segmentStart...])], digits: segmentDigestDigits)
        var cut = segmentStart + maxSegmentBytes - 1 - segmentDigestDigits
        if out[cut - 1] == UInt8(ascii: "%") { cut -= 1 } else if out[cut - 2] == UInt8(ascii: "%") { cut -= 2 }
        out.removeSubrange(cut...)
        out.append(UInt8(ascii: "-"))
        out.append(contentsOf: digest.utf8)
    }

    /// Characters outside `[A-Za-z0-9._-]` become `%XX` (UTF-8 bytes), and so does a leading `.`
    /// (no value is `.`, `..` or a hidden name, and none can look like the local store's
    /// temporary files, `.<name>.tmp-<hex>`, which are deleted at start); the result is capped at
    /// 128 bytes (never splitting an escape), and a missing or empty value becomes `_`.
    package static func keySafe(_ value: String?) -> String {
        guard let value, !value.isEmpty else { return "_" }
        if value == ".." { return "%2E%2E" }
        let utf8 = value.utf8
        if utf8.first != UInt8(ascii: ".") && utf8.count <= 128 && utf8.allSatisfy(isSafe) { return value }
        var out: [UInt8] = []
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in utf8 {
            if isSafe(byte) && !(out.isEmpty && byte == UInt8(ascii: ".")) {
                guard out.count < 128 else { break }
                out.append(byte)
            } else {
                guard out.count + 3 <= 128 else { break }
                out.append(contentsOf: [0x25, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default: false
        }
    }

    private static func isSafe(_ s: Unicode.Scalar) -> Bool {
        s.isASCII && isSafe(UInt8(s.value))
    }
}

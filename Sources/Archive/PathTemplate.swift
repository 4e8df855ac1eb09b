/// Object key directories from a template such as `{route}/{yyyy}/{MM}/{dd}/{HH}` or
/// `dt={yyyy}-{MM}-{dd}/hour={HH}`. Tokens: `{route} {source} {yyyy} {MM} {dd} {HH} {mm}` and
/// `{attr:NAME}`. Values that come from messages are made key-safe (see `keySafe`).
public struct PathTemplate: Sendable, Equatable {
    enum Part: Sendable, Equatable {
        case literal(String)
        case route, source, year, month, day, hour, minute
        case attribute(String)
    }

    let parts: [Part]
    public let text: String

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init(_ text: String) throws(ParseError) {
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
                    throw ParseError(description: "unknown token '{\(token)}' in path template '\(text)'; known: {route} {source} {yyyy} {MM} {dd} {HH} {mm} {attr:NAME}")
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
        if probe.hasPrefix("/") || probe.hasSuffix("/") || probe.split(separator: "/", omittingEmptySubsequences: false)
            .contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) {
            throw ParseError(description: "path template '\(text)' must be relative, without empty, '.' or '..' segments")
        }
        self.parts = parts
    }

    /// The directory for a record at the given time (UTC).
    public func expand(route: String, source: RecordSource, time: UTCTime,
                       attribute: (String) -> String?) -> String {
        let f = time.fields
        var out = ""
        for part in parts {
            switch part {
            case .literal(let l): out += l
            case .route: out += Self.keySafe(route)
            case .source: out += source.rawValue
            case .year: out += twoOrFour(f.year, 4)
            case .month: out += twoOrFour(f.month, 2)
            case .day: out += twoOrFour(f.day, 2)
            case .hour: out += twoOrFour(f.hour, 2)
            case .minute: out += twoOrFour(f.minute, 2)
            case .attribute(let name): out += Self.keySafe(attribute(name))
            }
        }
        return out
    }

    /// Characters outside `[A-Za-z0-9._-]` become `%XX` (UTF-8 bytes), a value of `.` or `..` is
    /// encoded, the result is capped at 128 bytes (never splitting an escape), and a missing or
    /// empty value becomes `_`.
    public static func keySafe(_ value: String?) -> String {
        guard let value, !value.isEmpty else { return "_" }
        if value == "." { return "%2E" }
        if value == ".." { return "%2E%2E" }
        var out = ""
        let hex = Array("0123456789ABCDEF")
        for byte in value.utf8 {
            let piece: String
            if byte < 0x80, isSafe(Unicode.Scalar(byte)) {
                piece = String(Unicode.Scalar(byte))
            } else {
                piece = "%" + String(hex[Int(byte >> 4)]) + String(hex[Int(byte & 0x0F)])
            }
            if out.utf8.count + piece.utf8.count > 128 { break }
            out += piece
        }
        return out
    }

    private static func isSafe(_ s: Unicode.Scalar) -> Bool {
        switch s {
        case "A"..."Z", "a"..."z", "0"..."9", ".", "_", "-": return true
        default: return false
        }
    }
}

private func twoOrFour(_ value: Int, _ width: Int) -> String {
    let s = String(value)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

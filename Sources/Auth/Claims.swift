import PersistorJSON

// JWT headers, JWT claims and JWKS documents as plain values. The shared strict scanner parses
// them; two rules are added that JWTs need: duplicate member names are refused (two parsers
// reading one token differently is a classic JWT bypass) and nesting is limited. `true` and `1`
// stay distinct (`email_verified`). Inputs are small (tokens ≤ 16 KiB, JWKS ≤ 1 MiB).

/// A parsed JSON value. Numbers are `Double` (JWT dates fit exactly up to 2^53).
enum ClaimValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([ClaimValue])
    case object([String: ClaimValue])

    var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var arrayValue: [ClaimValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    var objectValue: [String: ClaimValue]? {
        if case .object(let value) = self { return value }
        return nil
    }
}

struct ClaimParseError: Error, Equatable {}

enum ClaimParser {
    static let maxDepth = 32

    static func parse(_ bytes: [UInt8]) throws(ClaimParseError) -> ClaimValue {
        let root: JSONNode
        do {
            root = try JSONScanner.parse(bytes, maxDepth: maxDepth)
        } catch {
            throw ClaimParseError()
        }
        return try convert(root)
    }

    static func parseObject(_ bytes: [UInt8]) throws(ClaimParseError) -> [String: ClaimValue] {
        guard case .object(let object) = try parse(bytes) else { throw ClaimParseError() }
        return object
    }

    private static func convert(_ node: JSONNode) throws(ClaimParseError) -> ClaimValue {
        switch node.value {
        case .null: return .null
        case .bool(let value): return .bool(value)
        case .string(let value): return .string(value)
        case .number(let text):
            guard let value = Double(text) else { throw ClaimParseError() }
            return .number(value)
        case .array(let items):
            var values: [ClaimValue] = []
            values.reserveCapacity(items.count)
            for item in items { values.append(try convert(item)) }
            return .array(values)
        case .object(let members):
            var object: [String: ClaimValue] = [:]
            for (key, value) in members {
                guard object[key] == nil else { throw ClaimParseError() }
                object[key] = try convert(value)
            }
            return .object(object)
        case .unmaterialized:
            throw ClaimParseError()
        }
    }
}

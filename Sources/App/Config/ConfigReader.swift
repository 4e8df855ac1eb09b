// Typed access to Yams' node tree for the section decoders: checked mappings (only allowed keys,
// each once), scalars typed with a `file:line` error, and `${VAR}` expansion. Every decoder beside
// a settings type (`*+Config.swift`) reads through `ConfigReader`.

import Foundation
import Yams

/// One `key: value` pair of a mapping, with the key's line.
struct ConfigField {
    let key: String
    let line: Int
    let value: Node
    /// `'key'`, as messages name it.
    var label: String { "'\(key)'" }
}

/// A checked mapping: only allowed keys, no duplicates.
struct ConfigSection {
    /// Where the mapping is, e.g. `routes[0].auth.oidc`; empty for the top level.
    let path: String
    /// The line missing-key errors point at (the key that holds the mapping, or its first line).
    let line: Int
    let fields: [String: ConfigField]

    subscript(key: String) -> ConfigField? { fields[key] }
    var isEmpty: Bool { fields.isEmpty }
}

/// Reads one document: where errors point (`source`) and what `${VAR}` expands from.
struct ConfigReader {
    let source: String
    let environment: [String: String]

    func fail(_ line: Int, _ message: String) -> ConfigError {
        ConfigError("\(source):\(line): \(message)")
    }

    /// A key as messages show it: control characters (a multi-line key) escaped.
    static func display(_ key: String) -> String {
        var out = ""
        for scalar in key.unicodeScalars {
            if scalar.properties.generalCategory == .control {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// "at top level" or "in routes[0].auth".
    static func location(_ path: String) -> String {
        path.isEmpty ? "at top level" : "in \(path)"
    }

    static func isASCIIAlphanumeric(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return false
        }
    }

    // MARK: Mappings

    /// The mapping held by `field`; a key with no value (`server:`) counts as an empty mapping.
    func section(of field: ConfigField, path: String, allowed: Set<String>) throws(ConfigError) -> ConfigSection {
        try section(field.value, label: field.label, path: path, line: field.line, allowed: allowed)
    }

    func section(_ node: Node, label: String, path: String, line: Int, allowed: Set<String>) throws(ConfigError) -> ConfigSection {
        switch node {
        case .mapping(let mapping):
            var fields: [String: ConfigField] = [:]
            for (keyNode, value) in mapping {
                let keyLine = lineOf(keyNode, or: line)
                guard case .scalar(let key) = keyNode else {
                    throw fail(keyLine, "keys must be strings, got \(describe(keyNode)) \(Self.location(path))")
                }
                guard allowed.contains(key.string) else {
                    throw fail(keyLine, "unknown key '\(Self.display(key.string))' \(Self.location(path))")
                }
                if let earlier = fields[key.string] {  // normally caught by Yams already
                    throw fail(keyLine, "duplicate key '\(key.string)' \(Self.location(path)) (first on line \(earlier.line))")
                }
                fields[key.string] = ConfigField(key: key.string, line: keyLine, value: value)
            }
            return ConfigSection(path: path, line: line, fields: fields)
        case let node where isNull(node):
            return ConfigSection(path: path, line: line, fields: [:])
        default:
            throw fail(line, "\(label) must be a mapping, got \(describe(node))")
        }
    }

    func require(_ key: String, in section: ConfigSection) throws(ConfigError) -> ConfigField {
        guard let field = section[key] else {
            throw fail(section.line, "missing required key '\(key)' \(Self.location(section.path))")
        }
        return field
    }

    // MARK: Scalars

    /// The expanded text of a scalar value; errors for lists, mappings and empty values.
    func scalarText(_ node: Node, label: String, expected: String, line: Int) throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node, !isNull(node) else {
            throw fail(line, "\(label) must be \(expected), got \(describe(node))")
        }
        return try expand(scalar.string, line: lineOf(node, or: line))
    }

    /// A non-empty string.
    func string(_ field: ConfigField, expected: String = "a string") throws(ConfigError) -> String {
        let text = try scalarText(field.value, label: field.label, expected: expected, line: field.line)
        guard !text.isEmpty else { throw fail(field.line, "\(field.label) must not be empty") }
        return text
    }

    /// A non-empty list of non-empty strings.
    func stringList(_ field: ConfigField) throws(ConfigError) -> [String] {
        guard case .sequence(let sequence) = field.value else {
            throw fail(field.line, "\(field.label) must be a list of strings, got \(describe(field.value))")
        }
        guard !sequence.isEmpty else { throw fail(field.line, "\(field.label) must not be empty") }
        var values: [String] = []
        for (index, item) in sequence.enumerated() {
            let label = "'\(field.key)[\(index)]'"
            let line = lineOf(item, or: field.line)
            let text = try scalarText(item, label: label, expected: "a string", line: line)
            guard !text.isEmpty else { throw fail(line, "\(label) must not be empty") }
            values.append(text)
        }
        return values
    }

    func integer(_ field: ConfigField, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try scalarText(field.value, label: field.label, expected: "an integer", line: field.line)
        guard let value = Int(text) else {
            throw fail(field.line, "\(field.label) must be an integer, got '\(text)'")
        }
        guard range.contains(value) else {
            if range.upperBound == Int.max {
                throw fail(field.line, "\(field.label) must be at least \(range.lowerBound), got \(value)")
            }
            throw fail(field.line, "\(field.label) must be between \(range.lowerBound) and \(range.upperBound), got \(value)")
        }
        return value
    }

    func size(_ field: ConfigField) throws(ConfigError) -> Int {
        let text = try scalarText(field.value, label: field.label, expected: "a size like 32MiB", line: field.line)
        do {
            return try ConfigValues.parseSize(text)
        } catch {
            switch error {
            case .malformed:
                throw fail(field.line, "\(field.label) must be a size like 32MiB, got '\(text)'")
            case .notPositive, .negative:
                throw fail(field.line, "\(field.label) must be greater than 0, got '\(text)'")
            case .tooLarge:
                throw fail(field.line, "\(field.label) is too large: '\(text)'")
            }
        }
    }

    func duration(_ field: ConfigField, zeroAllowed: Bool) throws(ConfigError) -> Duration {
        let text = try scalarText(field.value, label: field.label, expected: "a duration like 10s", line: field.line)
        let value: Duration
        do {
            value = try ConfigValues.parseDuration(text)
        } catch {
            switch error {
            case .malformed:
                throw fail(field.line, "\(field.label) must be a duration like 10s or 200ms, got '\(text)'")
            case .negative, .notPositive:
                throw fail(field.line, "\(field.label) must not be negative, got '\(text)'")
            case .tooLarge:
                throw fail(field.line, "\(field.label) is too large: '\(text)'")
            }
        }
        if !zeroAllowed, value == .zero {
            throw fail(field.line, "\(field.label) must be greater than 0, got '\(text)'")
        }
        return value
    }

    func choice<T: RawRepresentable & CaseIterable>(_ field: ConfigField, _ type: T.Type) throws(ConfigError) -> T
    where T.RawValue == String {
        let options = T.allCases.map(\.rawValue).joined(separator: ", ")
        let text = try scalarText(field.value, label: field.label, expected: "one of \(options)", line: field.line)
        guard let value = T(rawValue: text) else {
            throw fail(field.line, "\(field.label) must be one of \(options), got '\(text)'")
        }
        return value
    }

    // MARK: ${VAR} expansion

    /// Replaces `${NAME}` with the variable's value and `$$` with `$`; any other `$` stays as is.
    func expand(_ text: String, line: Int) throws(ConfigError) -> String {
        guard text.contains("$") else { return text }
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if scalars[i] == "$", i + 1 < scalars.count {
                if scalars[i + 1] == "$" {
                    out.append("$")
                    i += 2
                    continue
                }
                if scalars[i + 1] == "{" {
                    guard let close = scalars[(i + 2)...].firstIndex(of: "}") else {
                        throw fail(line, "unterminated '${' in a value (write '$$' for a literal '$')")
                    }
                    let name = String(String.UnicodeScalarView(scalars[(i + 2)..<close]))
                    guard Self.isVariableName(name) else {
                        throw fail(line, "invalid environment variable reference '${\(name)}'")
                    }
                    guard let value = environment[name] else {
                        throw fail(line, "environment variable \(name) is not set")
                    }
                    out.append(contentsOf: value.unicodeScalars)
                    i = close + 1
                    continue
                }
            }
            out.append(scalars[i])
            i += 1
        }
        return String(out)
    }

    static func isVariableName(_ name: String) -> Bool {
        guard let first = name.utf8.first, !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else { return false }
        return name.utf8.allSatisfy { isASCIIAlphanumeric($0) || $0 == UInt8(ascii: "_") }
    }

    // MARK: Node helpers

    func lineOf(_ node: Node, or fallback: Int) -> Int {
        node.mark?.line ?? fallback
    }

    /// A plain empty, `~` or `null` scalar: a key written without a value.
    func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar: return isNull(node) ? "no value" : "a string"
        }
    }
}

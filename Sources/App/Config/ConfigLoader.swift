// YAML → PersistorConfig. Works on Yams' node tree (not Codable) so that every error can name the
// file, the line and the place in the document: "<source>:<line>: <message>". Unknown keys,
// duplicate keys and wrong node kinds are errors at every level; `${VAR}` in values expands from
// the given environment before the value is typed; `$$` is a literal `$` (docs/configuration.md).

import Foundation
import Yams

/// A configuration problem, formatted for the user as `"<source>:<line>: <message>"` (or
/// `"cannot read config file '<path>': <reason>"` when the file itself cannot be read).
package struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    package var description: String

    package init(_ description: String) {
        self.description = description
    }
}

/// Reads and validates the YAML configuration (docs/configuration.md).
package enum ConfigLoader {
    /// Config files larger than this are refused (protects against pointing `--config` at a device).
    static let maxFileBytes = 4 * 1024 * 1024

    /// Reads `path` (UTF-8) and parses it; error messages use `path` as the source name.
    package static func load(file path: String, environment: [String: String]) throws(ConfigError) -> PersistorConfig {
        let text = try readFile(path)
        return try parse(yaml: text, source: path, environment: environment)
    }

    /// Parses YAML text. An empty document (or only comments) gives `PersistorConfig()`.
    /// - Parameters:
    ///   - source: the name errors start with (usually the file path).
    ///   - environment: the variables `${VAR}` expands from.
    package static func parse(yaml: String, source: String, environment: [String: String]) throws(ConfigError) -> PersistorConfig {
        // libyaml only skips a byte-order mark when it detects the encoding itself.
        let yaml = yaml.hasPrefix("\u{FEFF}") ? String(yaml.dropFirst()) : yaml
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml, .default, .default, .utf8)
        } catch {
            throw ConfigError(yaml: error, text: yaml, source: source)
        }
        return try PersistorConfig(root, reader: ConfigReader(source: source, environment: environment))
    }

    /// The file's text. Read with plain read(2) so that a FIFO or a device is bounded by
    /// `maxFileBytes` too, and every failure names the path and errno's reason.
    static func readFile(_ path: String) throws(ConfigError) -> String {
        func failure(_ code: Int32) -> ConfigError {
            ConfigError("cannot read config file '\(path)': \(String(cString: strerror(code)))")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            if bytes.count > maxFileBytes {
                throw ConfigError("cannot read config file '\(path)': larger than \(maxFileBytes / (1024 * 1024)) MiB")
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError("cannot read config file '\(path)': not valid UTF-8")
        }
        return text
    }
}

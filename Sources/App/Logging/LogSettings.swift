import Logging

/// The `log` section: line format and minimum level.
package struct LogSettings: Sendable, Equatable {
    /// Log line format.
    package enum Format: String, Sendable, Equatable, CaseIterable {
        /// Human-readable lines (swift-log's stream handler).
        case text
        /// One JSON object per line (`JSONLogHandler`).
        case json
    }

    package var format: Format
    package var level: Logger.Level

    package init(format: Format = .text, level: Logger.Level = .info) {
        self.format = format
        self.level = level
    }
}

extension ConfigReader {
    func log(_ field: ConfigField) throws(ConfigError) -> LogSettings {
        let section = try section(of: field, path: "log", allowed: ["format", "level"])
        var log = LogSettings()
        if let f = section["format"] { log.format = try choice(f, LogSettings.Format.self) }
        if let f = section["level"] { log.level = try choice(f, Logger.Level.self) }
        return log
    }
}

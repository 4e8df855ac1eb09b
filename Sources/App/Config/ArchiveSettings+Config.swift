import PersistorArchive

extension ConfigReader {
    /// The `archive` section; the path template is parsed here, so its errors carry file:line.
    func archive(_ field: ConfigField) throws(ConfigError) -> ArchiveSettings {
        let section = try section(
            of: field, path: "archive",
            allowed: [
                "format", "batch", "path", "time", "gzipLevel",
                "maxPendingRecords", "maxPendingBytes",
            ])
        var archive = ArchiveSettings()
        if let f = section["format"] { archive.format = try choice(f, ArchiveSettings.Format.self) }
        if let f = section["batch"] {
            let batch = try self.section(
                of: f, path: "archive.batch",
                allowed: [
                    "maxRecords", "maxBytes", "maxDelay",
                    "concurrentWrites",
                ])
            if let f = batch["maxRecords"] { archive.batch.maxRecords = try integer(f, in: 1...Int.max) }
            if let f = batch["maxBytes"] { archive.batch.maxBytes = try size(f) }
            if let f = batch["maxDelay"] { archive.batch.maxDelay = try duration(f, zeroAllowed: true) }
            if let f = batch["concurrentWrites"] { archive.batch.concurrentWrites = try integer(f, in: 1...64) }
        }
        if let f = section["path"] {
            let text = try string(f)
            do {
                archive.path = try PathTemplate(text)
            } catch {
                throw fail(f.line, "'path': \(error.description)")
            }
        }
        if let f = section["time"] { archive.time = try choice(f, ArchiveSettings.Time.self) }
        if let f = section["gzipLevel"] { archive.gzipLevel = try integer(f, in: 0...9) }
        if let f = section["maxPendingRecords"] { archive.maxPendingRecords = try integer(f, in: 1...Int.max) }
        if let f = section["maxPendingBytes"] { archive.maxPendingBytes = try size(f) }
        return archive
    }
}

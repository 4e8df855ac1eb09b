import Foundation
import Logging
import PersistorCore

/// Writes each log event as one JSON object per line to standard error:
/// `{"ts":"…","level":"error","msg":"…","route":"…",…}`. Metadata values are flattened to strings.
package struct JSONLogHandler: LogHandler {
    package var metadata: Logger.Metadata = [:]
    package var metadataProvider: Logger.MetadataProvider?
    package var logLevel: Logger.Level = .info
    private let label: String

    package init(label: String) {
        self.label = label
    }

    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    package func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadata { fields[key] = value.description }
        if let provided = metadataProvider?.get() { for (key, value) in provided { fields[key] = value.description } }
        if let extra = event.metadata { for (key, value) in extra { fields[key] = value.description } }
        var line =
            "{\"ts\":\(Self.quote(Self.timestamp())),\"level\":\(Self.quote(event.level.rawValue)),\"logger\":\(Self.quote(label)),\"msg\":\(Self.quote(event.message.description))"
        for key in fields.keys.sorted() {
            line += ",\(Self.quote(key)):\(Self.quote(fields[key]!))"
        }
        line += "}\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let date = Date(timeIntervalSince1970: Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9)
        return date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    static func quote(_ s: String) -> String {
        var out: [UInt8] = []
        JSONString.append(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}

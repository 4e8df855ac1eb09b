import Foundation

/// Reads an archive directory the way a user would: every `*.ndjson.gz` object decompressed with
/// the system gzip, every line parsed as JSON.
package struct ArchiveReader {
    package let directory: TemporaryDirectory

    package init(_ directory: TemporaryDirectory) { self.directory = directory }

    package func objectPaths() -> [String] {
        directory.files().filter { $0.hasSuffix(".ndjson.gz") }
    }

    package func records() throws -> [[String: Any]] {
        var records: [[String: Any]] = []
        for object in objectPaths() {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: directory.path + "/" + object)))
            let text = try systemGunzip(bytes)
            for line in text.split(separator: 0x0A) {
                guard let record = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw TestFailure("a line of \(object) is not a JSON object")
                }
                records.append(record)
            }
            if text.last != 0x0A { throw TestFailure("\(object) does not end with a newline") }
        }
        return records
    }

    /// The exact payload bytes of a record (`data` or `dataBase64`).
    package static func payload(_ record: [String: Any]) -> [UInt8]? {
        if let text = record["data"] as? String { return Array(text.utf8) }
        if let base64 = record["dataBase64"] as? String { return Data(base64Encoded: base64).map { [UInt8]($0) } }
        return nil
    }
}

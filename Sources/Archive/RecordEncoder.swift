import Foundation
import PersistorCore

/// Encodes records as the archive's JSON lines (docs/archive-format.md#records): fixed key order,
/// payload as `data` when it is valid UTF-8 and as `dataBase64` otherwise, so decoding always gives
/// the exact bytes.
package enum RecordEncoder {
    /// The format version written into object metadata and sidecars.
    package static let formatVersion = "1"

    /// One JSON object followed by `\n`.
    package static func line(_ record: Record) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(record.payload.count + 256)
        appendObject(record, includePayload: true, to: &out)
        out.append(0x0A)
        return out
    }

    /// The raw format's `{id}.json` sidecar: the record without its payload, plus `formatVersion`.
    package static func sidecar(_ record: Record) -> [UInt8] {
        var out: [UInt8] = []
        appendObject(record, includePayload: false, to: &out)
        out.removeLast()  // the closing brace
        out.append(contentsOf: #","formatVersion":""#.utf8)
        out.append(contentsOf: formatVersion.utf8)
        out.append(contentsOf: "\"}\n".utf8)
        return out
    }

    /// The record as one JSON object; without the payload when `includePayload` is false.
    package static func appendObject(_ record: Record, includePayload: Bool, to out: inout [UInt8]) {
        out.append(contentsOf: #"{"id":"#.utf8)
        JSONString.append(record.id, to: &out)
        out.append(contentsOf: #","source":""#.utf8)
        out.append(contentsOf: record.source.rawValue.utf8)
        out.append(contentsOf: #"","route":"#.utf8)
        JSONString.append(record.route, to: &out)
        out.append(contentsOf: #","receivedAt":""#.utf8)
        record.receivedAt.appendISO8601(to: &out)
        out.append(0x22)
        if let eventTime = record.eventTime {
            out.append(contentsOf: #","eventTime":"#.utf8)
            JSONString.append(eventTime, to: &out)
        }
        out.append(contentsOf: #","attributes":{"#.utf8)
        for (index, attribute) in record.attributes.enumerated() {
            if index > 0 { out.append(0x2C) }
            JSONString.append(attribute.key, to: &out)
            out.append(0x3A)
            JSONString.append(attribute.value, to: &out)
        }
        out.append(contentsOf: #"},"meta":{"#.utf8)
        for (index, entry) in record.meta.enumerated() {
            if index > 0 { out.append(0x2C) }
            JSONString.append(entry.key, to: &out)
            out.append(0x3A)
            switch entry.value {
            case .string(let s): JSONString.append(s, to: &out)
            case .int(let n): out.append(contentsOf: String(n).utf8)
            case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
            }
        }
        out.append(0x7D)
        if includePayload {
            out.append(contentsOf: #","data":"#.utf8)
            if !JSONString.append(utf8: record.payload, to: &out) {
                out.removeLast(#""data":"#.utf8.count)
                out.append(contentsOf: #""dataBase64":""#.utf8)
                out.append(contentsOf: Data(record.payload).base64EncodedString().utf8)
                out.append(0x22)
            }
        }
        out.append(0x7D)
    }
}

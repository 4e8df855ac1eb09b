import PersistorCore
import Synchronization

/// Names batch objects uniquely across processes: `{timestamp}-{instance}-{seq}.ndjson.gz`.
package final class ObjectNamer: Sendable {
    /// 12 random hex characters, fixed for the process.
    package let instance: String
    private let sequence = Atomic<Int>(0)

    package init(instance: String = ObjectNamer.randomInstance()) {
        self.instance = instance
    }

    package static func randomInstance() -> String {
        let value = UInt64.random(in: 0..<(1 << 48))
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 12 - hex.count) + hex
    }

    func batchName(firstReceivedAt: UTCTime) -> String {
        let seq = String(sequence.add(1, ordering: .relaxed).newValue)
        let padded = String(repeating: "0", count: max(0, 12 - seq.count)) + seq
        return "\(firstReceivedAt.compact)-\(instance)-\(padded).ndjson.gz"
    }
}

/// Raw objects are named after their record, not after the process, so that a redelivery maps to
/// the same key.
extension ObjectNamer {
    /// Hex digits of a raw object name's digest (128 bits).
    static let rawDigestDigits = 32

    /// `{keySafe(id)}.{digest}`. The key-safe id alone is not exact: it is truncated, and an id is
    /// unique only within its scope (`Record.idScope`). The digest covers the identity (source,
    /// route, scope, id) and the content (event time, attributes, payload), but not what changes
    /// between redeliveries (receive time, delivery counts in `meta`). So a create-only put that
    /// finds its key taken has met the same message with the same bytes, and acknowledging it
    /// loses nothing; any other message gets a key of its own (docs/archive-format.md#raw-format).
    static func rawName(_ record: Record) -> String {
        var fields: [[UInt8]?] = [
            Array(record.source.rawValue.utf8), Array(record.route.utf8),
            record.idScope.map { Array($0.utf8) }, Array(record.id.utf8),
            record.eventTime.map { Array($0.utf8) }, Array(String(record.attributes.count).utf8),
        ]
        for attribute in record.attributes {
            fields.append(Array(attribute.key.utf8))
            fields.append(Array(attribute.value.utf8))
        }
        fields.append(record.payload)
        return PathTemplate.keySafe(record.id) + "." + KeyDigest.hex(fields, digits: rawDigestDigits)
    }
}

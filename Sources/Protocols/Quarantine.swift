import Crypto
import PersistorCore

/// Records for authenticated deliveries that could not be decoded: the whole body, archived as
/// `source: unparsed` with the reason, under an id derived from the body so a retry maps to the
/// same id.
package enum Quarantine {
    package static func record(
        route: String, body: [UInt8], receivedAt: UTCTime, reason: String,
        contentType: String?
    ) -> Record {
        let digest = Hex.encode(SHA256.hash(data: body))
        var meta: [(key: String, value: MetaValue)] = [("reason", .string(reason))]
        if let contentType { meta.append(("contentType", .string(contentType))) }
        return Record(
            id: "unparsed-" + digest, source: .unparsed, route: route, receivedAt: receivedAt,
            meta: meta, payload: body)
    }
}

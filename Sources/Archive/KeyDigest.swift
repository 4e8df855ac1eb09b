import Crypto
import PersistorCore

/// SHA-256 in object keys, where key-safe text alone would not tell two values apart (it is
/// truncated, and an id alone does not identify a message). docs/archive-format.md#raw-format,
/// docs/archive-format.md#path-template.
enum KeyDigest {
    /// The first `digits` lowercase hex digits of SHA-256 over `fields`, each framed by its length
    /// (and an absent one by a marker), so that different field lists never hash the same bytes.
    static func hex(_ fields: [[UInt8]?], digits: Int) -> String {
        var hasher = SHA256()
        for field in fields {
            guard let field else {
                hasher.update(data: [0])
                continue
            }
            var length = UInt64(field.count).bigEndian
            hasher.update(data: [1])
            withUnsafeBytes(of: &length) { hasher.update(bufferPointer: $0) }
            hasher.update(data: field)
        }
        let table = Hex.lowercaseDigits
        var out: [UInt8] = []
        out.reserveCapacity(digits)
        for byte in hasher.finalize() where out.count < digits {
            out.append(table[Int(byte >> 4)])
            if out.count < digits { out.append(table[Int(byte & 0x0F)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

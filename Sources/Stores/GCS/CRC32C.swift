import Foundation

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum GCS keeps for every object
/// (RFC 3720 §12.1 and Appendix B.4; https://cloud.google.com/storage/docs/hashes-etags).
/// zlib has only CRC-32 (IEEE) and swift-crypto neither, hence this table-driven version, eight
/// bytes a step ("slicing-by-8", Kounavis and Berry, IEEE Trans. Computers 57(11), 2008).
enum CRC32C {
    /// `tables[0]` is the byte-wise table; `tables[k][b]` is the CRC of `b` followed by k zero bytes.
    private static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for index in 0..<256 {
            var crc = UInt32(index)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[index] = crc
        }
        for slice in 1..<8 {
            for index in 0..<256 {
                let previous = tables[(slice - 1) * 256 + index]
                tables[slice * 256 + index] = tables[Int(previous & 0xFF)] ^ (previous >> 8)
            }
        }
        return tables
    }()

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        tables.withUnsafeBufferPointer { t in
            bytes.withUnsafeBytes { raw in
                var index = 0
                while index + 8 <= raw.count {
                    let low = crc ^ UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: index, as: UInt32.self))
                    let high = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
                    crc =
                        t[7 * 256 + Int(low & 0xFF)] ^ t[6 * 256 + Int((low >> 8) & 0xFF)]
                        ^ t[5 * 256 + Int((low >> 16) & 0xFF)] ^ t[4 * 256 + Int(low >> 24)]
                        ^ t[3 * 256 + Int(high & 0xFF)] ^ t[2 * 256 + Int((high >> 8) & 0xFF)]
                        ^ t[256 + Int((high >> 16) & 0xFF)] ^ t[Int(high >> 24)]
                    index += 8
                }
                while index < raw.count {
                    crc = t[Int((crc ^ UInt32(raw[index])) & 0xFF)] ^ (crc >> 8)
                    index += 1
                }
            }
        }
        return ~crc
    }

    /// The JSON API's `crc32c` form: base64 of the value's four bytes, big-endian.
    static func base64(_ bytes: [UInt8]) -> String {
        withUnsafeBytes(of: checksum(bytes).bigEndian) { Data($0).base64EncodedString() }
    }
}

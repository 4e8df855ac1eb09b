/// Hexadecimal digits: the lowercase encoding object keys, digests and JSON `\u00XX` escapes use,
/// and the value of one digit of either case (percent-encoding, chunk sizes, JSON `\uXXXX`).
package enum Hex {
    /// `0123456789abcdef`, indexed by a nibble.
    package static let lowercaseDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// The lowercase hex text of `bytes`, two digits per byte.
    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(lowercaseDigits[Int(byte >> 4)])
            out.append(lowercaseDigits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of one hex digit (`0-9`, `a-f`, `A-F`); nil for any other byte.
    @inlinable @inline(__always)
    package static func value(_ byte: UInt8) -> UInt8? {
        switch byte {
        case 0x30...0x39: byte &- 0x30
        case 0x41...0x46: byte &- 0x41 &+ 10
        case 0x61...0x66: byte &- 0x61 &+ 10
        default: nil
        }
    }
}

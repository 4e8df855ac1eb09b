/// `%XX` decoding (RFC 3986 §2.1), for query parameters and CloudEvents binary-mode header values
/// (CloudEvents HTTP binding §3.1.3.2). `+` stays `+`: it means a space only in HTML forms.
package enum PercentDecoding {
    /// Where a `%` is not followed by two hex digits.
    package struct MalformedEscape: Error, Sendable, Equatable {
        /// The offset of the `%` in the input.
        package var offset: Int

        package init(offset: Int) {
            self.offset = offset
        }
    }

    /// Decodes every `%XX` escape; any other byte is copied.
    package static func decode(_ bytes: some Collection<UInt8>) throws(MalformedEscape) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        var offset = 0
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                offset += 1
                continue
            }
            guard let high = iterator.next().flatMap(Hex.value), let low = iterator.next().flatMap(Hex.value) else {
                throw MalformedEscape(offset: offset)
            }
            out.append(high << 4 | low)
            offset += 3
        }
        return out
    }
}

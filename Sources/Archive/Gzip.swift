import CZlib

/// Streaming gzip compression (zlib, windowBits 31): append chunks, then finish once.
package struct GzipError: Error, CustomStringConvertible {
    package var description: String
}

/// Compresses a sequence of chunks into one gzip member without joining them first.
///
/// `finish` ends a member and readies the compressor for the next one, so a caller can keep one
/// compressor (and zlib's ~270 KB of state) instead of allocating it per object. Not thread-safe:
/// one user at a time.
///
/// A compressor made with `rawSegments: true` writes no gzip framing; it makes the pieces of a
/// `ParallelGzip` member (`finishSegment`) and tracks the CRC-32 and length of their input.
package final class GzipCompressor: @unchecked Sendable {
    private let stream: UnsafeMutablePointer<z_stream>
    private let rawSegments: Bool
    private var output: [UInt8] = []
    /// zlib writes here, and the bytes produced are appended to `output` (amortized growth).
    private let scratch: UnsafeMutableBufferPointer<UInt8>
    private var segmentCRC = crc32(0, nil, 0)
    private var segmentLength = 0

    /// `level` 0 (store) … 9 (smallest); 6 is zlib's default.
    init(level: Int, rawSegments: Bool = false) throws(GzipError) {
        self.rawSegments = rawSegments
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = deflateInit2_(
            stream, Int32(level), Z_DEFLATED, rawSegments ? -15 : 31, 8, Z_DEFAULT_STRATEGY,
            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw GzipError(description: "deflateInit2 failed (\(status))")
        }
        scratch = .allocate(capacity: 64 * 1024)
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        scratch.deallocate()
    }

    package func append(_ bytes: [UInt8]) throws(GzipError) {
        try bytes.withUnsafeBufferPointer { (buffer) throws(GzipError) in
            if rawSegments {
                segmentCRC = crc32(segmentCRC, buffer.baseAddress, uInt(buffer.count))
                segmentLength += buffer.count
            }
            try deflate(buffer, flush: Z_NO_FLUSH)
        }
    }

    /// Ends the member and returns it whole; the compressor then starts a new, empty member.
    package func finish() throws(GzipError) -> [UInt8] {
        precondition(!rawSegments, "a raw-segment compressor ends segments, not members")
        try deflate(UnsafeBufferPointer(start: nil, count: 0), flush: Z_FINISH)
        return try takeOutput()
    }

    /// Primes a raw segment that has no input yet with `dictionary`, the bytes that come just
    /// before it in the member: the segment may then refer back into them, as if compressed in one
    /// go with what precedes it (pigz does this for its blocks).
    func setDictionary(_ dictionary: [UInt8]) throws(GzipError) {
        precondition(rawSegments, "only a raw segment refers to bytes before it")
        let status = dictionary.withUnsafeBufferPointer { deflateSetDictionary(stream, $0.baseAddress, uInt($0.count)) }
        guard status == Z_OK else { throw GzipError(description: "deflateSetDictionary failed (\(status))") }
    }

    /// Ends a raw segment on a byte boundary, with deflate's final block if it is the `last` of its
    /// member, and returns it with the CRC-32 and length of its input; the next segment starts
    /// with an empty window.
    func finishSegment(last: Bool) throws(GzipError) -> ParallelGzip.Segment {
        precondition(rawSegments, "only a raw-segment compressor makes segments")
        try deflate(UnsafeBufferPointer(start: nil, count: 0), flush: last ? Z_FINISH : Z_FULL_FLUSH)
        let segment = ParallelGzip.Segment(bytes: try takeOutput(), crc: segmentCRC, length: segmentLength)
        segmentCRC = crc32(0, nil, 0)
        segmentLength = 0
        return segment
    }

    private func takeOutput() throws(GzipError) -> [UInt8] {
        defer { output = [] }
        guard deflateReset(stream) == Z_OK else { throw GzipError(description: "deflateReset failed") }
        return output
    }

    private func deflate(_ input: UnsafeBufferPointer<UInt8>, flush: Int32) throws(GzipError) {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.pointee.avail_in = uInt(input.count)
        defer { stream.pointee.next_in = nil }
        while true {
            stream.pointee.next_out = scratch.baseAddress
            stream.pointee.avail_out = uInt(scratch.count)
            let status = CZlib.deflate(stream, flush)
            let produced = scratch.count - Int(stream.pointee.avail_out)
            if produced > 0 { output.append(contentsOf: UnsafeBufferPointer(rebasing: scratch[0..<produced])) }
            if status == Z_STREAM_END { return }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                throw GzipError(description: "deflate failed (\(status))")
            }
            // Done once the input is taken and zlib stopped short of filling the scratch (it has
            // nothing more to write now); Z_FINISH goes on until the stream ends.
            if flush != Z_FINISH && stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return }
        }
    }
}

/// One gzip member compressed in pieces, possibly at different times on different threads, the way
/// pigz does with its blocks: each piece is a raw deflate segment whose window starts empty or
/// primed with the bytes before it (`setDictionary`) and which ends on a byte boundary (a full
/// flush; the last piece ends with the final block), so the segments joined are one ordinary
/// deflate stream. The member's CRC-32 is combined from the pieces'. Any gzip reader reads it like
/// a member made in one go; the ratio is a little lower at the start of an unprimed piece.
package enum ParallelGzip {
    /// A compressed piece: raw deflate bytes, and the CRC-32 and length of its input.
    package struct Segment: Sendable {
        var bytes: [UInt8]
        var crc: uLong
        var length: Int
    }

    /// The gzip header (RFC 1952: deflate, no flags, no mtime, OS Unix), the segments, and the
    /// trailer (CRC-32 and length mod 2^32, little-endian).
    static func assemble(_ segments: [Segment]) -> [UInt8] {
        var member: [UInt8] = [0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]
        member.reserveCapacity(member.count + segments.reduce(8) { $0 + $1.bytes.count })
        var crc = crc32(0, nil, 0)
        var length = 0
        for segment in segments {
            member.append(contentsOf: segment.bytes)
            crc = crc32_combine(crc, segment.crc, .init(segment.length))
            length += segment.length
        }
        for value in [UInt32(truncatingIfNeeded: crc), UInt32(truncatingIfNeeded: length)] {
            withUnsafeBytes(of: value.littleEndian) { member.append(contentsOf: $0) }
        }
        return member
    }
}

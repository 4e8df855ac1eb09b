import CZlib

/// Streaming gzip compression (zlib, windowBits 31): append chunks, then finish once.
public struct GzipError: Error, CustomStringConvertible {
    public var description: String
}

/// Compresses a sequence of chunks into one gzip member without joining them first.
///
/// `finish` ends a member and readies the compressor for the next one, so a caller can keep one
/// compressor (and zlib's ~270 KB of state) instead of allocating it per object. Not thread-safe:
/// one user at a time.
public final class GzipCompressor: @unchecked Sendable {
    private let stream: UnsafeMutablePointer<z_stream>
    private var output: [UInt8] = []

    /// `level` 0 (store) … 9 (smallest); 6 is zlib's default.
    public init(level: Int) throws(GzipError) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = deflateInit2_(stream, Int32(level), Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY,
                                   ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw GzipError(description: "deflateInit2 failed (\(status))")
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    public func append(_ bytes: [UInt8]) throws(GzipError) {
        try bytes.withUnsafeBufferPointer { (buffer) throws(GzipError) in try deflate(buffer, flush: Z_NO_FLUSH) }
    }

    /// Ends the member and returns it whole; the compressor then starts a new, empty member.
    public func finish() throws(GzipError) -> [UInt8] {
        try deflate(UnsafeBufferPointer(start: nil, count: 0), flush: Z_FINISH)
        defer { output = [] }
        guard deflateReset(stream) == Z_OK else { throw GzipError(description: "deflateReset failed") }
        return output
    }

    private func deflate(_ input: UnsafeBufferPointer<UInt8>, flush: Int32) throws(GzipError) {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
        stream.pointee.avail_in = uInt(input.count)
        defer { stream.pointee.next_in = nil }
        while true {
            let bound = Int(deflateBound(stream, uLong(stream.pointee.avail_in))) + 64
            let start = output.count
            output.reserveCapacity(start + bound)
            var status: Int32 = Z_OK
            var produced = 0
            output.append(contentsOf: repeatElement(0, count: bound))
            output.withUnsafeMutableBufferPointer { out in
                stream.pointee.next_out = out.baseAddress! + start
                stream.pointee.avail_out = uInt(bound)
                status = CZlib.deflate(stream, flush)
                produced = bound - Int(stream.pointee.avail_out)
            }
            output.removeLast(bound - produced)
            if status == Z_STREAM_END { return }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                throw GzipError(description: "deflate failed (\(status))")
            }
            if flush != Z_FINISH && stream.pointee.avail_in == 0 { return }
        }
    }

    /// Compresses one buffer.
    public static func compress(_ bytes: [UInt8], level: Int) throws(GzipError) -> [UInt8] {
        let compressor = try GzipCompressor(level: level)
        try compressor.append(bytes)
        return try compressor.finish()
    }
}

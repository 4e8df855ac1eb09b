import PersistorTestSupport
import Testing

@testable import PersistorArchive

@Suite struct GzipTests {
    @Test(arguments: [0, 1, 6, 9])
    func chunksDecompressWithSystemGzip(level: Int) throws {
        var rng = SystemRandomNumberGenerator()
        let chunks: [[UInt8]] = [
            [], Array("hello\n".utf8), (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &rng) },
            Array(repeating: 0x61, count: 1 << 20),
        ]
        let compressor = try GzipCompressor(level: level)
        for chunk in chunks { try compressor.append(chunk) }
        let gz = try compressor.finish()
        #expect(gz.prefix(2) == [0x1F, 0x8B])
        #expect(try systemGunzip(gz) == chunks.flatMap { $0 })
    }

    @Test func aCompressorIsReusedForTheNextMember() throws {
        let compressor = try GzipCompressor(level: 6)
        for text in ["first member\n", "", String(repeating: "second member ", count: 10_000)] {
            try compressor.append(Array(text.utf8))
            #expect(try systemGunzip(try compressor.finish()) == Array(text.utf8))
        }
    }

    /// The member of `pieces`, each compressed by its own compressor.
    func member(_ pieces: [[[UInt8]]], _ compressors: [GzipCompressor]) throws -> [UInt8] {
        let segments = try zip(pieces, compressors).enumerated().map { index, pair in
            for chunk in pair.0 { try pair.1.append(chunk) }
            return try pair.1.finishSegment(last: index == pieces.count - 1)
        }
        return ParallelGzip.assemble(segments)
    }

    @Test(arguments: [1, 6, 9])
    func piecesCompressedApartAreOneMember(level: Int) throws {
        var rng = SystemRandomNumberGenerator()
        let pieces: [[[UInt8]]] = [
            [Array("first piece\n".utf8), Array(repeating: 0x61, count: 70_000)],
            [],
            [(0..<70_000).map { _ in UInt8.random(in: 0...255, using: &rng) }],
            [Array(String(repeating: "{\"id\":\"a\",\"n\":1}\n", count: 2_000).utf8), []],
        ]
        let compressors = try pieces.map { _ in try GzipCompressor(level: level, rawSegments: true) }
        let gz = try member(pieces, compressors)
        #expect(gz.prefix(3) == [0x1F, 0x8B, 0x08])
        // gzip -d checks the CRC-32 and length in the trailer, so they must match the joined input.
        #expect(try systemGunzip(gz) == pieces.flatMap { $0.flatMap { $0 } })
        // The compressors are reusable for the next member.
        let again = try member([[Array("x".utf8)], [Array("y\n".utf8)]], Array(compressors.prefix(2)))
        #expect(try systemGunzip(again) == Array("xy\n".utf8))
    }

    @Test func oneEmptyPieceIsAValidMember() throws {
        #expect(try systemGunzip(try member([[]], [try GzipCompressor(level: 6, rawSegments: true)])) == [])
    }

    @Test func emptyInputIsAValidGzipMember() throws {
        let compressor = try GzipCompressor(level: 6)
        try compressor.append([])
        let gz = try compressor.finish()
        #expect(try systemGunzip(gz) == [])
    }
}

import PersistorTestSupport
import Testing
@testable import PersistorArchive

@Suite struct GzipTests {
    @Test(arguments: [0, 1, 6, 9])
    func chunksDecompressWithSystemGzip(level: Int) throws {
        var rng = SystemRandomNumberGenerator()
        let chunks: [[UInt8]] = [[], Array("hello\n".utf8), (0..<200_000).map { _ in UInt8.random(in: 0...255, using: &rng) },
                                 Array(repeating: 0x61, count: 1 << 20)]
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

    @Test func emptyInputIsAValidGzipMember() throws {
        let gz = try GzipCompressor.compress([], level: 6)
        #expect(try systemGunzip(gz) == [])
    }
}

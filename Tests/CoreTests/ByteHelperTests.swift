import Foundation
import PersistorCore
import Testing

@Suite("The byte helpers every stage shares")
struct ByteHelperTests {
    @Test("base64url round-trips, refuses the standard alphabet, padding and non-canonical endings")
    func base64url() {
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let encoded = Base64URL.encode(bytes)
            #expect(!encoded.contains("=") && !encoded.contains("+") && !encoded.contains("/"))
            #expect(Base64URL.decode(encoded.utf8) == bytes)
        }
        #expect(Base64URL.encode(Array("{\"alg\":\"RS256\"}".utf8)) == "eyJhbGciOiJSUzI1NiJ9")
        #expect(Base64URL.decode("-_8".utf8) == [0xFB, 0xFF])
        #expect(Base64URL.decode("+/8".utf8) == nil, "standard alphabet refused")
        #expect(Base64URL.decode("QQ==".utf8) == nil, "padding refused in tokens")
        #expect(Base64URL.decode("QQ==".utf8, strict: false) == [0x41], "tolerated in JWKS values")
        #expect(Base64URL.decode("QR".utf8) == nil, "non-zero leftover bits refused")
        #expect(Base64URL.decode("Q".utf8) == nil)
    }

    @Test("percent-decoding decodes %XX of either case, keeps '+', and names a malformed escape's offset")
    func percentDecoding() throws {
        #expect(try PercentDecoding.decode("a%2Fb+c".utf8) == Array("a/b+c".utf8))
        #expect(try PercentDecoding.decode("%E2%82%ac".utf8) == [0xE2, 0x82, 0xAC])
        #expect(throws: PercentDecoding.MalformedEscape(offset: 0)) { try PercentDecoding.decode("%4".utf8) }
        #expect(throws: PercentDecoding.MalformedEscape(offset: 2)) { try PercentDecoding.decode("ab%g0".utf8) }
        #expect(throws: PercentDecoding.MalformedEscape(offset: 4)) { try PercentDecoding.decode("%41x%".utf8) }
    }

    @Test("hex encodes lowercase and reads digits of either case")
    func hex() {
        #expect(Hex.encode([0x00, 0x0F, 0xA5, 0xFF]) == "000fa5ff")
        #expect(Hex.encode([]) == "")
        let values = Array("0123456789abcdefABCDEF".utf8).map { Hex.value($0) }
        #expect(values == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 10, 11, 12, 13, 14, 15])
        for byte in Array("gG/:@`x ".utf8) { #expect(Hex.value(byte) == nil) }
    }

    @Test("JSON strings escape quotes, backslashes and control characters, and refuse invalid UTF-8")
    func jsonStrings() {
        var out: [UInt8] = []
        JSONString.append("a\"b\\c\n\r\t\u{01}é€", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #""a\"b\\c\n\r\t\u0001é€""#)
        var refused: [UInt8] = [0x41]
        #expect(!JSONString.append(utf8: [0x22, 0xC3, 0x28], to: &refused))
        #expect(refused == [0x41], "nothing appended")
        // Long plain runs go a word at a time; the escape after them must still be found.
        var long: [UInt8] = []
        JSONString.append(String(repeating: "x", count: 17) + "\"", to: &long)
        #expect(String(decoding: long, as: UTF8.self) == "\"" + String(repeating: "x", count: 17) + "\\\"\"")
    }

    @Test("durations convert to seconds and whole nanoseconds")
    func durations() {
        #expect(Duration.milliseconds(1500).timeInterval == 1.5)
        #expect(Duration.seconds(2).nanoseconds == 2_000_000_000)
        #expect(Duration.nanoseconds(7).nanoseconds == 7)
    }

    @Test("HTTP and x-amz dates are formatted in UTC, weekday included")
    func dates() {
        #expect(UTCTime(seconds: 1_795_694_400).httpDate == "Thu, 26 Nov 2026 12:00:00 GMT")
        #expect(UTCTime(seconds: 0).httpDate == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(UTCTime(seconds: 951_782_400 + 3_661).httpDate == "Tue, 29 Feb 2000 01:01:01 GMT")
        #expect(UTCTime(seconds: -86_400).httpDate == "Wed, 31 Dec 1969 00:00:00 GMT")
        #expect(UTCTime(seconds: 1_440_938_160).amzDate == "20150830T123600Z")
    }

    @Test("assigned ids are lowercase UUIDs, never repeated")
    func assignedIDs() {
        let first = Record.assignedID(), second = Record.assignedID()
        #expect(first != second)
        #expect(UUID(uuidString: first) != nil && first == first.lowercased())
    }
}

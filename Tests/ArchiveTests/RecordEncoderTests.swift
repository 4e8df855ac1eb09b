import Foundation
import PersistorCore
import Testing

@testable import PersistorArchive

@Suite struct RecordEncoderTests {
    let time = UTCTime(seconds: 1_795_719_600, nanoseconds: 123_456_789)  // 2026-11-26T19:00:00.123Z

    func decode(_ line: [UInt8]) throws -> [String: Any] {
        #expect(line.last == 0x0A)
        #expect(!line.dropLast().contains(0x0A), "one record per line")
        return try #require(JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
    }

    @Test func utf8PayloadIsDataWithAllFields() throws {
        let record = Record(
            id: "42", source: .pubsub, route: "orders", receivedAt: time,
            eventTime: "2026-11-26T18:59:59.870Z", attributes: [("k", "v"), ("é", "\"q\"")],
            meta: [("subscription", .string("projects/p/subscriptions/s")), ("deliveryAttempt", .int(3)), ("idAssigned", .bool(false))],
            payload: Array("{\"order\":42}\n\u{1}\t\\é😀".utf8))
        let line = RecordEncoder.line(record)
        let object = try decode(line)
        #expect(object["id"] as? String == "42")
        #expect(object["source"] as? String == "pubsub")
        #expect(object["route"] as? String == "orders")
        #expect(object["receivedAt"] as? String == "2026-11-26T19:00:00.123Z")
        #expect(object["eventTime"] as? String == "2026-11-26T18:59:59.870Z")
        #expect(object["attributes"] as? [String: String] == ["k": "v", "é": "\"q\""])
        let meta = try #require(object["meta"] as? [String: Any])
        #expect(meta["subscription"] as? String == "projects/p/subscriptions/s")
        #expect(meta["deliveryAttempt"] as? Int == 3)
        #expect(meta["idAssigned"] as? Bool == false)
        #expect(Array((object["data"] as? String ?? "").utf8) == record.payload)
        #expect(object["dataBase64"] == nil)
        #expect(String(decoding: line, as: UTF8.self).hasPrefix(#"{"id":"42","source":"pubsub","route":"orders","receivedAt":"#))
    }

    @Test(
        arguments: [
            [0xFF, 0x00, 0x01],
            [0xC0, 0xA0],  // overlong
            [0xED, 0xA0, 0x80],  // UTF-8-encoded surrogate
            [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
            Array("ok".utf8) + [0xE2, 0x82],  // truncated at the end
        ] as [[UInt8]])
    func invalidUTF8PayloadIsBase64(payload: [UInt8]) throws {
        let record = Record(id: "b", source: .pubsub, route: "r", receivedAt: time, payload: payload)
        let object = try decode(RecordEncoder.line(record))
        #expect(object["data"] == nil)
        let base64 = try #require(object["dataBase64"] as? String)
        #expect(Data(base64Encoded: base64).map { [UInt8]($0) } == payload)
    }

    @Test func emptyPayloadAndNoEventTime() throws {
        let record = Record(id: "e", source: .unparsed, route: "r", receivedAt: time, payload: [])
        let object = try decode(RecordEncoder.line(record))
        #expect(object["data"] as? String == "")
        #expect(object["eventTime"] == nil)
        #expect((object["attributes"] as? [String: String])?.isEmpty == true)
    }

    @Test func everyByteValueRoundTrips() throws {
        // All bytes that are valid single-byte UTF-8, including every control character.
        let payload = (0..<0x80).map(UInt8.init)
        let object = try decode(RecordEncoder.line(Record(id: "x", source: .pubsub, route: "r", receivedAt: time, payload: payload)))
        #expect(Array((object["data"] as? String ?? "").utf8) == payload)
    }

    @Test func densePayloadsOfEscapesRoundTrip() throws {
        // The escaper measures first and then writes into exactly that much room: payloads made
        // mostly of escapes (and multi-byte characters) must come back byte for byte.
        var generator = SystemRandomNumberGenerator()
        let pieces: [[UInt8]] = [[0x22], [0x5C], [0x0A], [0x0D], [0x09], [0x00], [0x1F], Array("é".utf8), Array("😀".utf8), Array("ab".utf8)]
        for length in [1, 7, 8, 9, 64, 1000, 100_000] {
            var payload: [UInt8] = []
            while payload.count < length { payload += pieces.randomElement(using: &generator)! }
            let line = RecordEncoder.line(Record(id: "d", source: .pubsub, route: "r", receivedAt: time, payload: payload))
            let object = try decode(line)
            #expect(Array((object["data"] as? String ?? "").utf8) == payload, "length \(length)")
        }
    }

    @Test func arbitraryBytesComeBackExactly() throws {
        // Random bytes, often invalid UTF-8: `data` when valid (checked against Swift's own
        // validation), `dataBase64` otherwise, and the exact bytes either way.
        var generator = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            let alphabet: [UInt8] = round % 2 == 0 ? Array(0...255) : [0x22, 0x5C, 0x0A, 0x41, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80]
            let payload = (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            let object = try decode(RecordEncoder.line(Record(id: "r", source: .pubsub, route: "r", receivedAt: time, payload: payload)))
            if String(validating: payload, as: UTF8.self) != nil {
                #expect(Array((object["data"] as? String ?? "").utf8) == payload, "\(payload)")
            } else {
                #expect(object["dataBase64"] as? String == Data(payload).base64EncodedString(), "\(payload)")
            }
        }
    }

    @Test func aByteNeedingAttentionIsFoundAtEveryOffsetOfAWord() throws {
        // Plain text is skipped 8 bytes at a time; each special byte, at each position within and
        // across word boundaries, must still be escaped (or make the payload base64 when invalid).
        let specials: [[UInt8]] = [[0x22], [0x5C], [0x0A], [0x00], [0x1F], [0x7F], Array("é".utf8), Array("😀".utf8), [0xFF]]
        for special in specials {
            for offset in 0..<20 {
                let payload = Array(repeating: UInt8(ascii: "a"), count: offset) + special + Array(repeating: UInt8(ascii: "b"), count: 19 - offset)
                let object = try decode(RecordEncoder.line(Record(id: "w", source: .pubsub, route: "r", receivedAt: time, payload: payload)))
                if special == [0xFF] {
                    #expect(object["dataBase64"] as? String == Data(payload).base64EncodedString())
                } else {
                    #expect(Array((object["data"] as? String ?? "").utf8) == payload, "special \(special) at \(offset)")
                }
            }
        }
    }
}

@Suite struct UTCTimeTests {
    @Test func formats() {
        let t = UTCTime(seconds: 1_795_719_600, nanoseconds: 123_999_999)
        #expect(t.iso8601 == "2026-11-26T19:00:00.123Z")
        #expect(t.compact == "20261126T190000.123Z")
        #expect(UTCTime(seconds: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(UTCTime(seconds: 951_782_400).iso8601 == "2000-02-29T00:00:00.000Z")
    }

    @Test(arguments: [
        ("2021-02-26T19:13:55Z", 1_614_366_835, 0),
        ("2021-02-26T19:13:55.749Z", 1_614_366_835, 749_000_000),
        ("2021-02-26T19:13:55.749123Z", 1_614_366_835, 749_123_000),
        ("2021-02-26T19:13:55.749123456Z", 1_614_366_835, 749_123_456),
        ("2017-06-26T18:41:00.9584103Z", 1_498_502_460, 958_410_300),
        ("2021-02-26T20:13:55+01:00", 1_614_366_835, 0),
        ("2021-02-26t19:13:55z", 1_614_366_835, 0),
    ])
    func parsesRFC3339(text: String, seconds: Int64, nanos: Int32) {
        #expect(UTCTime(rfc3339: text) == UTCTime(seconds: seconds, nanoseconds: nanos))
    }

    @Test(arguments: [
        "", "2021-02-26", "2021-02-26T19:13:55", "2021-13-26T19:13:55Z", "2021-02-26T19:13:55.Z",
        "2021-02-26T19:13:55.1234567890123Z+", "x021-02-26T19:13:55Z", "2021-02-26T19:13:55+0100",
    ])
    func rejectsInvalid(text: String) {
        #expect(UTCTime(rfc3339: text) == nil)
    }
}

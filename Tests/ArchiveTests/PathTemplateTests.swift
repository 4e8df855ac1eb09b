import PersistorCore
import Testing

@testable import PersistorArchive

@Suite struct PathTemplateTests {
    let time = UTCTime(seconds: 1_795_719_600)  // 2026-11-26T19:00:00Z

    func expand(_ template: String, attributes: [String: String] = [:], route: String = "orders") throws -> String {
        try PathTemplate(template).expand(route: route, source: .pubsub, time: time) { attributes[$0] }
    }

    @Test func defaultAndHiveTemplates() throws {
        #expect(try expand("{route}/{yyyy}/{MM}/{dd}/{HH}") == "orders/2026/11/26/19")
        #expect(try expand("{route}/dt={yyyy}-{MM}-{dd}/hour={HH}/{mm}") == "orders/dt=2026-11-26/hour=19/00")
        #expect(try expand("{source}/{attr:tenant}", attributes: ["tenant": "acme"]) == "pubsub/acme")
        #expect(try expand("{attr:tenant}") == "_")
        #expect(try expand("{attr:tenant}", attributes: ["tenant": ""]) == "_")
    }

    @Test(arguments: [
        ("../../etc", "%2E.%2F..%2Fetc"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        (".hidden", "%2Ehidden"),
        (".x.tmp-1", "%2Ex.tmp-1"),
        ("/abs", "%2Fabs"),
        ("%2e%2e", "%252e%252e"),
        ("a\u{0}b", "a%00b"),
        ("a\nb", "a%0Ab"),
        ("ü", "%C3%BC"),
        ("a b", "a%20b"),
    ])
    func hostileAttributesAreKeySafe(value: String, expected: String) throws {
        let path = try expand("{route}/{attr:x}", attributes: ["x": value])
        #expect(path == "orders/" + expected)
        #expect(!path.split(separator: "/").contains { $0 == ".." || $0 == "." })
    }

    @Test func longValuesAreCappedWithoutSplittingEscapes() throws {
        let long = try expand("{attr:x}", attributes: ["x": String(repeating: "a", count: 4096)])
        #expect(long == String(repeating: "a", count: 128))
        let escaped = try expand("{attr:x}", attributes: ["x": String(repeating: "é", count: 100)])
        #expect(escaped.utf8.count <= 128)
        #expect(escaped.utf8.count % 6 == 0, "whole %C3%A9 pairs only")
        let route = try expand("{route}", route: String(repeating: "r", count: 300))
        #expect(route.utf8.count == 128)
    }

    // The local store deletes `.<name>.tmp-<hex>` files at start
    // (docs/archive-format.md#files-of-the-local-store): no key-safe value may look like one, nor like
    // any other hidden name.
    @Test(arguments: [".x.tmp-1", ".", "..", "...", ".tmp-", String(repeating: ".", count: 300), ".é"])
    func keySafeValuesNeverStartWithADot(value: String) {
        #expect(!PathTemplate.keySafe(value).hasPrefix("."))
    }

    @Test func segmentsStayWithinNameMaxAndDistinct() throws {
        let a = String(repeating: "a", count: 128)
        let template = "{route}/{attr:a}{attr:b}/x{attr:a}-{attr:b}"
        let b = String(repeating: "b", count: 127)
        let one = try expand(template, attributes: ["a": a, "b": b + "1"])
        let two = try expand(template, attributes: ["a": a, "b": b + "2"])
        let cjk = try expand(template, attributes: ["a": String(repeating: "é", count: 100), "b": String(repeating: "漢", count: 50)])
        for path in [one, two, cjk] {
            let segments = path.split(separator: "/")
            #expect(segments.count == 3 && segments[0] == "orders")
            #expect(segments.allSatisfy { $0.utf8.count <= PathTemplate.maxSegmentBytes }, "\(segments.map(\.utf8.count))")
            // Every % starts a whole escape.
            let bytes = Array(path.utf8)
            for (i, byte) in bytes.enumerated() where byte == UInt8(ascii: "%") {
                #expect(i + 2 < bytes.count && bytes[i + 1...i + 2].allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x46) })
            }
        }
        #expect(one != two, "values that differ after the cut still give different segments")
        #expect(one.split(separator: "/")[1].hasPrefix(a), "a shortened segment keeps its start")
        // Segments that fit are left alone.
        #expect(try expand("{attr:a}{attr:b}", attributes: ["a": a, "b": "b"]) == a + "b")
    }

    @Test(arguments: ["{nope}", "{route", "route}", "/{route}", "{route}/", "{route}//x", "../{route}", "{route}/./x", "a b/{route}", "{attr:}"])
    func rejectsBadTemplates(template: String) {
        #expect(throws: PathTemplate.ParseError.self) { try PathTemplate(template) }
    }
}

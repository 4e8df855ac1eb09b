import PersistorJSON
import PersistorTestSupport
import Testing

// MARK: - Helpers

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

private func parseResult(
    _ input: [UInt8], materializeDepth: Int = .max,
    maxDepth: Int = 256
) -> Result<JSONNode, JSONError> {
    do throws(JSONError) {
        return .success(
            try JSONScanner.parse(
                input, materializeDepth: materializeDepth,
                maxDepth: maxDepth))
    } catch {
        return .failure(error)
    }
}

private func parse(_ text: String, materializeDepth: Int = .max) throws -> JSONNode {
    try JSONScanner.parse(utf8(text), materializeDepth: materializeDepth)
}

/// Asserts that parsing fails with `reason` (and, if given, at `offset`).
private func expectFailure(
    _ input: [UInt8], _ reason: String, at offset: Int? = nil,
    materializeDepth: Int = .max, maxDepth: Int = 256,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    switch parseResult(input, materializeDepth: materializeDepth, maxDepth: maxDepth) {
    case .success(let node):
        Issue.record(
            "expected failure \"\(reason)\" but parsed a value spanning \(node.range)",
            sourceLocation: sourceLocation)
    case .failure(let error):
        #expect(error.reason == reason, sourceLocation: sourceLocation)
        if let offset {
            #expect(error.offset == offset, sourceLocation: sourceLocation)
        }
    }
}

private func expectFailure(
    _ text: String, _ reason: String, at offset: Int? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    expectFailure(utf8(text), reason, at: offset, sourceLocation: sourceLocation)
}

/// Compact canonical rendering (strings re-escaped minimally), "?" for unmaterialized values.
private func render(_ node: JSONNode) -> String {
    switch node.value {
    case .object(let members):
        return "{"
            + members.map { jsonStringLiteral($0.key) + ":" + render($0.value) }
            .joined(separator: ",") + "}"
    case .array(let elements):
        return "[" + elements.map(render).joined(separator: ",") + "]"
    case .string(let s): return jsonStringLiteral(s)
    case .number(let text): return text
    case .bool(let b): return b ? "true" : "false"
    case .null: return "null"
    case .unmaterialized: return "?"
    }
}

private func slice(_ input: [UInt8], _ range: Range<Int>) -> String {
    String(decoding: input[range], as: UTF8.self)
}

private func elements(_ node: JSONNode) -> [JSONNode] {
    if case .array(let items) = node.value { return items }
    return []
}

private func members(_ node: JSONNode) -> [(key: String, value: JSONNode)] {
    if case .object(let items) = node.value { return items }
    return []
}

private func isUnmaterialized(_ node: JSONNode?) -> Bool {
    if let node, case .unmaterialized = node.value { return true }
    return false
}

// MARK: - Values and round trips

@Test func scalarsRoundTripWithExactRanges() throws {
    let cases = [
        "true", "false", "null", "0", "-0", "1e3", "-0.5", "1E+2", "123.456e-7",
        "0.0", "-1234567890", "\"abc\"", "\"\"", "[]", "{}",
    ]
    for text in cases {
        let node = try parse(text)
        #expect(render(node) == text)
        #expect(node.range == 0..<text.utf8.count)
        let padded = " \t\r\n" + text + "\n\n "
        let paddedNode = try parse(padded)
        #expect(paddedNode.range == 4..<(4 + text.utf8.count))
        #expect(render(paddedNode) == text)
    }
}

@Test func numbersKeepTheirExactSourceText() throws {
    let node = try parse(#"[1e3, -0.5, 1E-0, 0.000, 10, -0e+01, 12345678901234567890123]"#)
    let texts = elements(node).map { element -> String in
        if case .number(let text) = element.value { return text }
        return "not a number"
    }
    #expect(texts == ["1e3", "-0.5", "1E-0", "0.000", "10", "-0e+01", "12345678901234567890123"])
}

@Test func compoundValuesRoundTripKeepingOrderAndDuplicateKeys() throws {
    let text = #"{"a":[1,2,{"b":null}],"c":"d","a":true,"e":{},"f":[],"g":[[[]]],"h":false}"#
    let node = try parse(text)
    #expect(render(node) == text)
    #expect(members(node).map(\.key) == ["a", "c", "a", "e", "f", "g", "h"])
    // The subscript returns the first of duplicate keys.
    #expect(node["a"].map(render) == "[1,2,{\"b\":null}]")
}

@Test func elementRangesSliceExactBytesAroundWhitespace() throws {
    let input = utf8(#"[ {"a":1} , {"b":"]}\""} ]"#)
    let node = try JSONScanner.parse(input)
    #expect(node.range == 0..<input.count)
    let items = elements(node)
    #expect(items.count == 2)
    #expect(slice(input, items[0].range) == #"{"a":1}"#)
    #expect(slice(input, items[1].range) == #"{"b":"]}\""}"#)
    #expect(items[1]["b"]?.stringValue == "]}\"")
    #expect(slice(input, items[1]["b"]!.range) == #""]}\"""#)
}

@Test func nestedStructuralCharactersInsideStrings() throws {
    let input = utf8(#"[["]"],"}",{"k\"]":"\\"},"\\\\\"",[[]],{"x":"{[\"]}"},"\\"]"#)
    let node = try JSONScanner.parse(input)
    let expected = [
        #"["]"]"#, #""}""#, #"{"k\"]":"\\"}"#, #""\\\\\"""#, "[[]]",
        #"{"x":"{[\"]}"}"#, #""\\""#,
    ]
    #expect(elements(node).map { slice(input, $0.range) } == expected)
    let items = elements(node)
    #expect(items[2]["k\"]"]?.stringValue == "\\")
    #expect(items[3].stringValue == "\\\\\"")
    #expect(items[5]["x"]?.stringValue == "{[\"]}")
    #expect(items[6].stringValue == "\\")
}

@Test func prettyPrintedMultiLineInput() throws {
    let text =
        "{\r\n\t\"message\": {\n    \"data\": \"aGVsbG8=\",\n    \"attributes\": {\n"
        + "      \"k\" : \"v\"\n    },\n    \"messageId\": \"136969346945\"\n  },\n"
        + "  \"subscription\" :\t\"projects/p/subscriptions/s\"\n}\n"
    let input = utf8(text)
    let node = try JSONScanner.parse(input)
    #expect(node.range == 0..<(input.count - 1))
    let message = try #require(node["message"])
    #expect(message.isObject)
    #expect(slice(input, message.range).hasPrefix("{\n    \"data\""))
    #expect(slice(input, message.range).hasSuffix("\"136969346945\"\n  }"))
    #expect(message["data"]?.stringValue == "aGVsbG8=")
    #expect(message["messageId"]?.stringValue == "136969346945")
    #expect(
        slice(input, try #require(message["attributes"]).range)
            == "{\n      \"k\" : \"v\"\n    }")
    #expect(node["subscription"]?.stringValue == "projects/p/subscriptions/s")
}

@Test func unicodeEscapes() throws {
    #expect(try parse(#""\u00e9""#).stringValue == "é")
    #expect(try parse(#""\u00E9""#).stringValue == "é")
    #expect(try parse(#""\ud83d\ude00""#).stringValue == "😀")
    #expect(try parse(#""\uD83D\uDE00""#).stringValue == "😀")
    #expect(try parse(#""\u0000""#).stringValue == "\u{0}")
    #expect(try parse(#""\u20AC\uFFFF""#).stringValue == "€\u{FFFF}")
    #expect(try parse(#""\udbff\udfff""#).stringValue == "\u{10FFFF}")
    #expect(try parse(#""\"\\\/\b\f\n\r\t""#).stringValue == "\"\\/\u{8}\u{C}\n\r\t")
    #expect(try parse(#""aé\n😀b\u0041""#).stringValue == "aé\n😀bA")
}

@Test func loneSurrogatesDecodeToReplacementCharacter() throws {
    #expect(try parse(#""\ud800""#).stringValue == "\u{FFFD}")
    #expect(try parse(#""\udc00x""#).stringValue == "\u{FFFD}x")
    #expect(try parse(#""\ud800\u0041""#).stringValue == "\u{FFFD}A")
    #expect(try parse(#""\ud800\ud83d\ude00""#).stringValue == "\u{FFFD}😀")
    #expect(try parse(#""\ude00\ud83d""#).stringValue == "\u{FFFD}\u{FFFD}")
    #expect(try parse(#""\ud83dabc""#).stringValue == "\u{FFFD}abc")
    #expect(try parse(#""\ud83d\n""#).stringValue == "\u{FFFD}\n")
    // The range still covers the raw escape text.
    let input = utf8(#"["\ud800"]"#)
    let node = try JSONScanner.parse(input)
    #expect(slice(input, elements(node)[0].range) == #""\ud800""#)
}

@Test func rawMultibyteUTF8Strings() throws {
    let samples = [
        "é", "€", "😀", "日本語テキスト", "ascii then é at offset 15",
        "0123456é89abcdef😀0123456789€", String(repeating: "ü", count: 40),
        "\u{FFFF}", "\u{10FFFF}", "\u{7F}\u{80}\u{7FF}\u{800}\u{FFFD}\u{10000}",
    ]
    for sample in samples {
        let input = utf8("[\"" + sample + "\", \"" + sample + "\\n\"]")
        let node = try JSONScanner.parse(input)
        #expect(elements(node).map(\.stringValue) == [sample, sample + "\n"])
    }
    // Keys too, including long ones that exercise the word-at-a-time scan.
    let node = try parse(#"{"clé-très-longue-😀-0123456789": 1}"#)
    #expect(node["clé-très-longue-😀-0123456789"]?.intValue == 1)
}

@Test func longPlainStringsScanCorrectlyAtEveryAlignment() throws {
    for length in 0..<40 {
        for prefix in 0..<9 {
            let body = String(repeating: "x", count: length)
            let text = String(repeating: " ", count: prefix) + "[\"" + body + "\",\"" + body + "\\\"\"]"
            let node = try parse(text)
            #expect(elements(node).map(\.stringValue) == [body, body + "\""])
        }
    }
}

@Test func rawBufferPointerOverloadUsesOffsetsIntoThatBuffer() throws {
    let storage = utf8(#"xxxx[1, "a"]yyyy"#)
    let node = try storage.withUnsafeBytes { raw in
        try JSONScanner.parse(UnsafeRawBufferPointer(rebasing: raw[4..<12]))
    }
    #expect(node.range == 0..<8)
    #expect(elements(node).map(\.range) == [1..<2, 4..<7])
    // An empty buffer (possibly with a nil base address) is an error, not a crash.
    #expect(throws: JSONError(offset: 0, reason: "empty input")) {
        try JSONScanner.parse(UnsafeRawBufferPointer(start: nil, count: 0))
    }
}

// MARK: - Accessors

@Test func intValueStringValueSubscriptAndIsObject() throws {
    let node = try parse(
        #"{"i":42,"neg":-7,"zero":-0,"f":1.0,"e":1e3,"big":9223372036854775807,"#
            + #""over":9223372036854775808,"min":-9223372036854775808,"s":"42","o":{"x":null},"#
            + #""a":[1],"t":true}"#)
    #expect(node.isObject)
    #expect(node["i"]?.intValue == 42)
    #expect(node["neg"]?.intValue == -7)
    #expect(node["zero"]?.intValue == 0)
    #expect(node["f"]?.intValue == nil)
    #expect(node["e"]?.intValue == nil)
    #expect(node["big"]?.intValue == Int.max)
    #expect(node["over"]?.intValue == nil)
    #expect(node["min"]?.intValue == Int.min)
    #expect(node["s"]?.intValue == nil)
    #expect(node["s"]?.stringValue == "42")
    #expect(node["i"]?.stringValue == nil)
    #expect(node["o"]?.isObject == true)
    #expect(node["o"]?["x"] != nil)
    #expect(node["o"]?["missing"] == nil)
    #expect(node["a"]?.isObject == false)
    #expect(node["a"]?["i"] == nil)
    #expect(node["t"]?.isObject == false)
    #expect(node["missing"] == nil)
    #expect(node["I"] == nil)  // case-sensitive
    // Hand-built nodes with non-JSON text never produce a bogus Int.
    for text in ["+1", "-", "", "1-", "--1", " 1"] {
        #expect(JSONNode(value: .number(text), range: 0..<0).intValue == nil)
    }
}

// MARK: - materializeDepth / maxDepth

@Test func materializeDepthOneBuildsDepthOneButNotItsMembers() throws {
    let input = utf8(#"[{"a":{"b":[1,2]}}, {"c":"s","d":7}]"#)
    let node = try JSONScanner.parse(input, materializeDepth: 1)
    let items = elements(node)
    #expect(items.count == 2)
    // Depth 1 (the array's elements) is materialized: keys are decoded ...
    #expect(items[0].isObject)
    #expect(members(items[0]).map(\.key) == ["a"])
    #expect(members(items[1]).map(\.key) == ["c", "d"])
    // ... but depth 2 (their member values, scalars included) is validated only.
    let a = try #require(items[0]["a"])
    #expect(isUnmaterialized(a))
    #expect(slice(input, a.range) == #"{"b":[1,2]}"#)
    #expect(isUnmaterialized(items[1]["c"]))
    #expect(slice(input, items[1]["c"]!.range) == #""s""#)
    #expect(isUnmaterialized(items[1]["d"]))
    #expect(slice(input, items[1]["d"]!.range) == "7")
    #expect(render(node) == #"[{"a":?},{"c":?,"d":?}]"#)
}

@Test func materializeDepthZeroAndNegative() throws {
    let input = utf8(#" [ {"a":1} , 2 , "x" ] "#)
    let depth0 = try JSONScanner.parse(input, materializeDepth: 0)
    #expect(render(depth0) == "[?,?,?]")
    #expect(elements(depth0).map { slice(input, $0.range) } == [#"{"a":1}"#, "2", #""x""#])
    let negative = try JSONScanner.parse(input, materializeDepth: -1)
    #expect(isUnmaterialized(negative))
    #expect(negative.range == 1..<(input.count - 1))
    let full = try JSONScanner.parse(input)
    #expect(render(full) == #"[{"a":1},2,"x"]"#)
}

@Test func unmaterializedValuesAreStillFullyValidated() {
    expectFailure(utf8(#"[{"a":{"b":[1,2,]}}]"#), "trailing comma", at: 15, materializeDepth: 1)
    expectFailure(utf8(#"[{"a":"\x"}]"#), "invalid escape", at: 7, materializeDepth: 0)
    expectFailure([0x5B, 0x22, 0xC0, 0xA0, 0x22, 0x5D], "invalid UTF-8", at: 2, materializeDepth: 0)
    expectFailure(utf8(#"[{"a":01}]"#), "leading zero", at: 6, materializeDepth: 0)
    expectFailure(utf8(#"{"a":tru}"#), "invalid literal", at: 8, materializeDepth: -1)
    expectFailure(utf8(#"{"a":[1]} x"#), "trailing data", at: 10, materializeDepth: -1)
    expectFailure(
        utf8(String(repeating: "[", count: 300)), "nesting too deep", at: 256,
        materializeDepth: 0)
}

@Test func maxDepthBoundaries() throws {
    let ok = utf8(String(repeating: "[", count: 256) + String(repeating: "]", count: 256))
    _ = try JSONScanner.parse(ok)
    let tooDeep = utf8(String(repeating: "[", count: 257) + String(repeating: "]", count: 257))
    expectFailure(tooDeep, "nesting too deep", at: 256)

    _ = try JSONScanner.parse(utf8("[[1]]"), maxDepth: 2)
    _ = try JSONScanner.parse(utf8("7"), maxDepth: 0)
    expectFailure(utf8("[[[1]]]"), "nesting too deep", at: 2, maxDepth: 2)
    expectFailure(utf8(#"{"a":{"b":{}}}"#), "nesting too deep", at: 10, maxDepth: 2)
    expectFailure(utf8("[]"), "nesting too deep", at: 0, maxDepth: 0)
}

// MARK: - Rejections (one rule per test)

@Test func rejectsTrailingCommaInObject() {
    expectFailure(#"{"a":1,}"#, "trailing comma", at: 6)
    expectFailure(#"{"a":1 , }"#, "trailing comma", at: 7)
}

@Test func rejectsTrailingCommaInArray() {
    expectFailure("[1,]", "trailing comma", at: 2)
    expectFailure("[[1],\n]", "trailing comma", at: 4)
}

@Test func rejectsCloudEventsDeadLetterSampleWithTrailingComma() {
    let sample = #"{"id":"x","publishtime":"2020-08-13T17:18:14.0265758Z",}"#
    expectFailure(sample, "trailing comma", at: sample.utf8.count - 2)
}

@Test func rejectsMisplacedCommasAndColons() {
    expectFailure("[,1]", "unexpected character", at: 1)
    expectFailure("[1,,2]", "unexpected character", at: 3)
    expectFailure("[1 2]", "unexpected character", at: 3)
    expectFailure("{,}", "unexpected character", at: 1)
    expectFailure(#"{"a" 1}"#, "expected colon", at: 5)
    expectFailure(#"{"a":}"#, "unexpected character", at: 5)
    expectFailure(#"{"a":1 "b":2}"#, "unexpected character", at: 7)
    expectFailure("{1:2}", "unexpected character", at: 1)
    expectFailure("[1}", "unexpected character", at: 2)
    expectFailure(#"{"a":1]"#, "unexpected character", at: 6)
    expectFailure("]", "unexpected character", at: 0)
}

@Test func rejectsLeadingZero() {
    expectFailure("01", "leading zero", at: 0)
    expectFailure("[-012]", "leading zero", at: 2)
    expectFailure("00", "leading zero", at: 0)
}

@Test func rejectsBareControlCharacterInString() {
    expectFailure([0x22, 0x61, 0x09, 0x22], "control character in string", at: 2)
    expectFailure([0x22, 0x0A, 0x22], "control character in string", at: 1)
    expectFailure([0x5B, 0x22, 0x00, 0x22, 0x5D], "control character in string", at: 2)
    expectFailure(utf8("\"0123456789\u{1F}\""), "control character in string", at: 11)
}

@Test func rejectsInvalidEscape() {
    expectFailure(#""\x""#, "invalid escape", at: 1)
    expectFailure(#""ab\'""#, "invalid escape", at: 3)
    expectFailure(#""\u12G4""#, "invalid escape", at: 1)
    expectFailure(#""\U0041""#, "invalid escape", at: 1)
    expectFailure(#""\ud800\uZZZZ""#, "invalid escape", at: 7)
}

@Test func rejectsOverlongUTF8() {
    expectFailure([0x22, 0xC0, 0xA0, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xC1, 0xBF, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xE0, 0x80, 0xAF, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xF0, 0x8F, 0xBF, 0xBF, 0x22], "invalid UTF-8", at: 1)
}

@Test func rejectsUTF8EncodedSurrogates() {
    expectFailure([0x22, 0xED, 0xA0, 0x80, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xED, 0xBF, 0xBF, 0x22], "invalid UTF-8", at: 1)
}

@Test func rejectsCodePointsAboveU10FFFF() {
    expectFailure([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xF5, 0x80, 0x80, 0x80, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xFF, 0x22], "invalid UTF-8", at: 1)
}

@Test func rejectsStrayContinuationBytes() {
    expectFailure([0x22, 0x80, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0x61, 0xC3, 0xA9, 0xA9, 0x22], "invalid UTF-8", at: 4)
}

@Test func rejectsTruncatedMultibyteSequence() {
    // At the very end of the input.
    expectFailure([0x22, 0xE2, 0x82], "invalid UTF-8", at: 1)
    expectFailure([0x22, 0xF0, 0x9F, 0x98], "invalid UTF-8", at: 1)
    // Cut short by the closing quote.
    expectFailure([0x22, 0xE2, 0x82, 0x22], "invalid UTF-8", at: 1)
    expectFailure([0x5B, 0x22, 0xC3, 0x22, 0x5D], "invalid UTF-8", at: 2)
}

@Test func rejectsByteOrderMark() {
    expectFailure([0xEF, 0xBB, 0xBF] + utf8("{}"), "byte order mark", at: 0)
    expectFailure([0xEF, 0xBB, 0xBF], "byte order mark", at: 0)
    // Not at the very start it is simply a stray byte.
    expectFailure([0x20, 0xEF, 0xBB, 0xBF] + utf8("{}"), "unexpected character", at: 1)
}

@Test func rejectsTrailingData() {
    expectFailure("{} {}", "trailing data", at: 3)
    expectFailure("1 2", "trailing data", at: 2)
    expectFailure("truex", "trailing data", at: 4)
    expectFailure("[1]]", "trailing data", at: 3)
    expectFailure("0x1F", "trailing data", at: 1)
    expectFailure([0x7B, 0x7D, 0x00], "trailing data", at: 2)
}

@Test func rejectsEmptyInput() {
    expectFailure([], "empty input", at: 0)
    expectFailure(" \t\r\n", "empty input", at: 4)
}

@Test func rejectsLoneMinus() {
    expectFailure("-", "invalid number", at: 1)
    expectFailure("[-]", "invalid number", at: 2)
    expectFailure("-Infinity", "invalid number", at: 1)
}

@Test func rejectsNumberEndingInDot() {
    expectFailure("1.", "invalid number", at: 2)
    expectFailure("[1.]", "invalid number", at: 3)
    expectFailure("0.e1", "invalid number", at: 2)
}

@Test func rejectsIncompleteExponent() {
    expectFailure("1e", "invalid number", at: 2)
    expectFailure("1E+", "invalid number", at: 3)
    expectFailure("[2e-]", "invalid number", at: 4)
}

@Test func rejectsNumberStartingWithDot() {
    expectFailure(".5", "unexpected character", at: 0)
    expectFailure("[.5]", "unexpected character", at: 1)
}

@Test func rejectsExplicitPlusSign() {
    expectFailure("+1", "unexpected character", at: 0)
    expectFailure("[+1]", "unexpected character", at: 1)
}

@Test func rejectsNaNAndInfinity() {
    expectFailure("NaN", "unexpected character", at: 0)
    expectFailure("[Infinity]", "unexpected character", at: 1)
}

@Test func rejectsTruncatedOrMisspeltLiterals() {
    expectFailure("tru", "invalid literal", at: 3)
    expectFailure("[nul]", "invalid literal", at: 4)
    expectFailure("fals", "invalid literal", at: 4)
    expectFailure("trUe", "invalid literal", at: 2)
}

@Test func rejectsUppercaseLiterals() {
    expectFailure("True", "unexpected character", at: 0)
    expectFailure("[NULL]", "unexpected character", at: 1)
}

@Test func rejectsNonJSONWhitespace() {
    expectFailure(utf8("\u{0C}1"), "unexpected character", at: 0)
    expectFailure(utf8("[1,\u{0B}2]"), "unexpected character", at: 3)
    expectFailure(utf8("\u{A0}1"), "unexpected character", at: 0)
}

@Test func rejectsCommentsAndSingleQuotes() {
    expectFailure("[1] // c", "trailing data", at: 4)
    expectFailure("/* c */ 1", "unexpected character", at: 0)
    expectFailure("['a']", "unexpected character", at: 1)
    expectFailure("{a:1}", "unexpected character", at: 1)
}

@Test func rejectsUnterminatedString() {
    expectFailure(#""abc"#, "unterminated string", at: 4)
    expectFailure(#"["abc\"]"#, "unterminated string", at: 8)
    expectFailure(#""abc\"#, "unterminated string", at: 5)
    expectFailure(#""\u12"#, "unterminated string", at: 5)
    expectFailure(#"{"ab"#, "unterminated string", at: 4)
}

@Test func rejectsUnterminatedArray() {
    expectFailure("[", "unexpected end of input", at: 1)
    expectFailure("[1, 2", "unexpected end of input", at: 5)
    expectFailure("[1,", "unexpected end of input", at: 3)
}

@Test func rejectsUnterminatedObject() {
    expectFailure("{", "unexpected end of input", at: 1)
    expectFailure(#"{"a""#, "unexpected end of input", at: 4)
    expectFailure(#"{"a":"#, "unexpected end of input", at: 5)
    expectFailure(#"{"a":1"#, "unexpected end of input", at: 6)
}

@Test func rejectsMillionOpenBracketsWithoutStackOverflow() {
    expectFailure([UInt8](repeating: 0x5B, count: 1_000_000), "nesting too deep", at: 256)
    let objects = [UInt8](String(repeating: #"{"a":"#, count: 200_000).utf8)
    expectFailure(objects, "nesting too deep", at: 5 * 256)
    // Even an unlimited maxDepth is handled iteratively (and not materialized here).
    expectFailure(
        [UInt8](repeating: 0x5B, count: 1_000_000), "unexpected end of input",
        at: 1_000_000, materializeDepth: 0, maxDepth: .max)
}

// MARK: - Batches

@Test func thousandElementBatchRangesMatchIndependentlyRecordedOffsets() throws {
    var input = utf8("[")
    var expected: [Range<Int>] = []
    let separators = [",", " , ", ",\n  ", "\t,\r\n"]
    for k in 0..<1000 {
        if k > 0 { input += utf8(separators[k % separators.count]) }
        let element: String
        switch k % 4 {
        case 0: element = #"{"id":"evt-\#(k)","data":{"x":[1,2,"]}"]},"n":\#(k)}"#
        case 1: element = #"{"subject":"a\"b\\","id":"evt-\#(k)"}"#
        case 2: element = "{\n  \"id\" : \"evt-\(k)\",\n  \"data\" : \"é😀\\u00e9\"\n}"
        default: element = #"{"data":[],"id":"evt-\#(k)","eventTime":"2020-08-13T17:18:14Z"}"#
        }
        let start = input.count
        input += utf8(element)
        expected.append(start..<input.count)
    }
    input += utf8("\n]\n")

    for depth in [Int.max, 1, 0] {
        let node = try JSONScanner.parse(input, materializeDepth: depth)
        let items = elements(node)
        #expect(items.count == 1000)
        #expect(items.map(\.range) == expected)
    }
    let items = elements(try JSONScanner.parse(input, materializeDepth: 0))
    for (k, item) in items.enumerated() {
        let event = try JSONScanner.parse(Array(input[item.range]))
        #expect(event.isObject)
        #expect(event["id"]?.stringValue == "evt-\(k)")
    }
}

// MARK: - Fuzzing

private struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }
}

/// Checks every node's range lies inside the buffer and inside its parent's range, in order,
/// and that the bytes of each container re-parse to a value spanning exactly those bytes.
private func checkRanges(_ node: JSONNode, within bounds: Range<Int>, input: [UInt8]) -> Bool {
    guard node.range.lowerBound >= bounds.lowerBound, node.range.upperBound <= bounds.upperBound,
        !node.range.isEmpty
    else { return false }
    var children: [JSONNode] = []
    switch node.value {
    case .array(let items): children = items
    case .object(let items): children = items.map(\.value)
    default: break
    }
    var previousEnd = node.range.lowerBound
    for child in children {
        guard child.range.lowerBound > previousEnd,
            checkRanges(child, within: node.range, input: input)
        else { return false }
        previousEnd = child.range.upperBound
    }
    guard case .success(let reparsed) = parseResult(Array(input[node.range])),
        reparsed.range == 0..<node.range.count
    else { return false }
    return true
}

@Test func fuzzRandomBytesAndMutationsNeverCrash() {
    var rng = SplitMix64(state: 0x5EED_1234_ABCD_0042)
    let seeds = [
        #"{"message":{"data":"aGk=","attributes":{"a":"b"},"messageId":"1"},"subscription":"s"}"#,
        #"[{"id":"1","data":{"x":[1,2.5e-3,-0,true,false,null]},"s":"\u00e9\ud83d\ude00\n"}]"#,
        #"[ {"a":1} , {"b":"]}\""} ]"#,
        "{\n  \"k\": [\n    \"é😀\",\n    {}\n  ]\n}",
        #"[[[[[[["deep"]]]]]]]"#,
        #""plain string with \"escapes\" and \\ slashes \/""#,
        "-12.5E+07",
    ].map(utf8)
    let alphabet =
        utf8(#"{}[]:,"\ -+.eE0123456789tfnrulasu"#) + [
            0x09, 0x0A, 0x0D, 0xC3, 0xA9,
            0xED, 0xA0, 0xF0, 0x9F, 0x00,
        ]
    var parsedCount = 0
    var failedCount = 0
    for iteration in 0..<5_000 {
        var input: [UInt8]
        switch iteration % 5 {
        case 0:
            input = (0..<rng.below(48)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 1:
            input = (0..<rng.below(48)).map { _ in alphabet[rng.below(alphabet.count)] }
        default:
            input = seeds[rng.below(seeds.count)]
            for _ in 0...rng.below(3) {
                let position = input.isEmpty ? 0 : rng.below(input.count)
                switch rng.below(6) {
                case 0 where !input.isEmpty:
                    input[position] = UInt8(truncatingIfNeeded: rng.next())
                case 1:
                    input.insert(alphabet[rng.below(alphabet.count)], at: position)
                case 2 where !input.isEmpty:
                    input.remove(at: position)
                case 3:
                    input = Array(input[..<position])
                case 4 where !input.isEmpty:
                    let end = min(input.count, position + 1 + rng.below(8))
                    input.insert(contentsOf: input[position..<end], at: position)
                default:
                    input[position...].reverse()
                }
            }
        }
        let full = parseResult(input)
        let shallow = parseResult(input, materializeDepth: rng.below(4) - 1)
        switch (full, shallow) {
        case (.success(let node), .success(let shallowNode)):
            parsedCount += 1
            #expect(node.range == shallowNode.range)
            #expect(
                checkRanges(node, within: 0..<input.count, input: input),
                "bad ranges for \(input)")
        case (.failure(let error), .failure(let shallowError)):
            failedCount += 1
            // Validation does not depend on how much is materialized.
            #expect(error == shallowError, "\(input)")
            #expect(error.offset >= 0 && error.offset <= input.count)
        default:
            Issue.record("materializeDepth changed the verdict for \(input)")
        }
    }
    #expect(parsedCount > 100)
    #expect(failedCount > 100)
}

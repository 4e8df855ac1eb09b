// libFuzzer target for the strict JSON scanner (PersistorJSON).
//
// Built with `-DFUZZING -sanitize=fuzzer` (scripts/fuzz) it exports `LLVMFuzzerTestOneInput`;
// otherwise it is a corpus replayer: `FuzzJSONScanner FILE|DIR...` runs every file through the same
// checks (CI runs the committed seeds this way without sanitizers).
//
// Checks, for every input:
//   * scanning never crashes or reads out of bounds (the fuzz build adds AddressSanitizer, and
//     libFuzzer hands over an exactly sized heap copy of the input);
//   * an accepted document's byte ranges are inside the input, the top-level range is the input
//     without surrounding whitespace, every range starts and ends with the right bytes (quotes,
//     brackets, the literal, the number text), children lie inside their parent in order, and the
//     bytes between them are exactly the separators (`,` for arrays; `,` "key" `:` for objects, the key
//     decoding to the member's key);
//   * every node's slice, scanned alone, gives the same value;
//   * a smaller `materializeDepth` gives the same verdict and the same ranges, with exactly the
//     nodes deeper than it unmaterialized; a smaller `maxDepth` accepts exactly the documents that
//     nest no deeper, and otherwise fails with "nesting too deep" no later than the first error;
//   * on valid UTF-8, the verdict agrees with Foundation's JSONSerialization (and so do the decoded
//     strings, array lengths and object keys), except where the scanner is stricter or different
//     on purpose (see `foundationComparable`).

import Foundation
import PersistorJSON

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        fuzzJSONScanner(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
#else
    import FuzzReplay

    @main
    struct ReplayCorpus {
        static func main() { replayCorpus("FuzzJSONScanner", fuzzJSONScanner) }
    }
#endif

// MARK: - The target

func fuzzJSONScanner(_ input: UnsafeRawBufferPointer) {
    let bytes = Array(input)
    var rng = SplitMix64(seed: fnv1a(bytes))
    let full = scan(input)

    if case .success(let root) = full {
        var lower = 0, upper = bytes.count
        while lower < upper, isWhitespace(bytes[lower]) { lower += 1 }
        while upper > lower, isWhitespace(bytes[upper - 1]) { upper -= 1 }
        check(root.range == lower..<upper, "top-level range \(root.range) is not the trimmed input \(lower)..<\(upper)")
        var budget = 16 * bytes.count + 4096
        checkNode(root, in: bytes, reparseBudget: &budget)
    } else if case .failure(let error) = full {
        check(error.offset >= 0 && error.offset <= bytes.count, "error offset \(error.offset) outside the input")
        check(knownReasons.contains(error.reason), "unknown reason \(error.reason)")
    }

    // materializeDepth: same verdict, same ranges, exactly the deeper nodes unmaterialized.
    let materializeDepth = Int(rng.next() % 6) - 1
    let partial = scan(input, materializeDepth: materializeDepth)
    switch (full, partial) {
    case (.success(let a), .success(let b)):
        checkPartial(b, against: a, depth: 0, materializeDepth: materializeDepth)
    case (.failure(let a), .failure(let b)):
        check(a == b, "materializeDepth \(materializeDepth) changed the error \(a) to \(b)")
    default:
        fail("materializeDepth \(materializeDepth) changed the verdict")
    }

    // maxDepth: accepted exactly when the document nests no deeper.
    let maxDepth = Int(rng.next() % 10)
    let bounded = scan(input, maxDepth: maxDepth)
    switch (full, bounded) {
    case (.success(let a), .success(let b)):
        check(nesting(a) <= maxDepth, "maxDepth \(maxDepth) accepted nesting \(nesting(a))")
        check(render(a) == render(b), "maxDepth changed the value")
    case (.success(let a), .failure(let b)):
        check(nesting(a) > maxDepth && b.reason == "nesting too deep", "maxDepth \(maxDepth) rejected nesting \(nesting(a)): \(b)")
    case (.failure(let a), .failure(let b)):
        check(
            a == b || (b.reason == "nesting too deep" && b.offset <= a.offset),
            "maxDepth \(maxDepth) changed the error \(a) to \(b)")
    case (.failure(let a), .success):
        fail("maxDepth \(maxDepth) accepted what the default rejected: \(a)")
    }

    compareWithFoundation(bytes, full)
}

// MARK: - Ranges

func scan(_ input: UnsafeRawBufferPointer, materializeDepth: Int = .max, maxDepth: Int = 256) -> Result<JSONNode, JSONError> {
    do throws(JSONError) {
        return .success(try JSONScanner.parse(input, materializeDepth: materializeDepth, maxDepth: maxDepth))
    } catch {
        return .failure(error)
    }
}

func scan(_ bytes: ArraySlice<UInt8>) -> Result<JSONNode, JSONError> {
    // An exactly sized copy, so AddressSanitizer sees reads past the slice.
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    defer { copy.deallocate() }
    copy.copyBytes(from: bytes)
    return scan(UnsafeRawBufferPointer(copy))
}

/// Checks a materialized node's range and its children's ranges and separators.
func checkNode(_ node: JSONNode, in bytes: [UInt8], reparseBudget: inout Int) {
    let range = node.range
    check(range.lowerBound >= 0 && range.upperBound <= bytes.count && !range.isEmpty, "range \(range) outside the input")
    let first = bytes[range.lowerBound], last = bytes[range.upperBound - 1]
    let slice = bytes[range]

    // The slice alone scans to the same value.
    if reparseBudget >= slice.count {
        reparseBudget -= slice.count
        guard case .success(let again) = scan(slice) else { fail("slice \(range) does not scan alone") }
        check(render(again) == render(node), "slice \(range) scans to a different value")
    }

    switch node.value {
    case .object(let members):
        check(first == UInt8(ascii: "{") && last == UInt8(ascii: "}"), "object range \(range) is not braced")
        var position = range.lowerBound + 1
        for (index, member) in members.enumerated() {
            let child = member.value.range
            check(child.lowerBound >= position && child.upperBound <= range.upperBound - 1, "member range \(child) out of order")
            checkMemberGap(bytes[position..<child.lowerBound], key: member.key, first: index == 0)
            checkNode(member.value, in: bytes, reparseBudget: &reparseBudget)
            position = child.upperBound
        }
        check(bytes[position..<range.upperBound - 1].allSatisfy(isWhitespace), "junk before }")
    case .array(let elements):
        check(first == UInt8(ascii: "[") && last == UInt8(ascii: "]"), "array range \(range) is not bracketed")
        var position = range.lowerBound + 1
        for (index, element) in elements.enumerated() {
            let child = element.range
            check(child.lowerBound >= position && child.upperBound <= range.upperBound - 1, "element range \(child) out of order")
            let gap = bytes[position..<child.lowerBound].filter { !isWhitespace($0) }
            check(gap == (index == 0 ? [] : [UInt8(ascii: ",")]), "junk between array elements")
            checkNode(element, in: bytes, reparseBudget: &reparseBudget)
            position = child.upperBound
        }
        check(bytes[position..<range.upperBound - 1].allSatisfy(isWhitespace), "junk before ]")
    case .string:
        check(first == UInt8(ascii: "\"") && last == UInt8(ascii: "\"") && range.count >= 2, "string range \(range) is not quoted")
    case .number(let text):
        check(Array(text.utf8) == Array(slice), "number text differs from its range")
    case .bool(let value):
        check(Array(slice) == Array((value ? "true" : "false").utf8), "bool range differs")
    case .null:
        check(Array(slice) == Array("null".utf8), "null range differs")
    case .unmaterialized:
        fail("unmaterialized node in a full scan")
    }
}

/// The bytes between an object's previous member (or `{`) and a member value: ws [, ws] "key" ws : ws.
func checkMemberGap(_ gap: ArraySlice<UInt8>, key: String, first: Bool) {
    var lower = gap.startIndex, upper = gap.endIndex
    while lower < upper, isWhitespace(gap[lower]) { lower += 1 }
    if !first {
        check(lower < upper && gap[lower] == UInt8(ascii: ","), "missing comma between members")
        lower += 1
    }
    while upper > lower, isWhitespace(gap[upper - 1]) { upper -= 1 }
    check(upper > lower && gap[upper - 1] == UInt8(ascii: ":"), "missing colon before a member value")
    upper -= 1
    guard case .success(let scanned) = scan(gap[lower..<upper]), case .string(let decoded) = scanned.value
    else { fail("member key is not a lone string") }
    check(decoded == key, "member key decodes differently")
}

/// `partial` (scanned with `materializeDepth`) against `full`: same ranges; unmaterialized exactly deeper.
func checkPartial(_ partial: JSONNode, against full: JSONNode, depth: Int, materializeDepth: Int) {
    check(partial.range == full.range, "materializeDepth changed a range")
    if depth > materializeDepth {
        guard case .unmaterialized = partial.value else { fail("node deeper than materializeDepth is materialized") }
        return
    }
    switch (partial.value, full.value) {
    case (.object(let a), .object(let b)):
        check(a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key }, "materializeDepth changed an object")
        for (x, y) in zip(a, b) { checkPartial(x.value, against: y.value, depth: depth + 1, materializeDepth: materializeDepth) }
    case (.array(let a), .array(let b)):
        check(a.count == b.count, "materializeDepth changed an array")
        for (x, y) in zip(a, b) { checkPartial(x, against: y, depth: depth + 1, materializeDepth: materializeDepth) }
    case (.unmaterialized, _):
        fail("node within materializeDepth is unmaterialized")
    default:
        check(render(partial) == render(full), "materializeDepth changed a scalar")
    }
}

/// How many containers are open at the deepest point (0 for a scalar).
func nesting(_ node: JSONNode) -> Int {
    switch node.value {
    case .object(let members): return 1 + (members.map { nesting($0.value) }.max() ?? 0)
    case .array(let elements): return 1 + (elements.map(nesting).max() ?? 0)
    default: return 0
    }
}

/// A canonical rendering for comparisons ("?" for unmaterialized values).
func render(_ node: JSONNode) -> String {
    switch node.value {
    case .object(let members):
        return "{" + members.map { quoted($0.key) + ":" + render($0.value) }.joined(separator: ",") + "}"
    case .array(let elements):
        return "[" + elements.map(render).joined(separator: ",") + "]"
    case .string(let text): return quoted(text)
    case .number(let text): return text
    case .bool(let value): return value ? "true" : "false"
    case .null: return "null"
    case .unmaterialized: return "?"
    }
}

func quoted(_ text: String) -> String {
    "\"" + text.unicodeScalars.map { $0 == "\"" || $0 == "\\" || $0.value < 0x20 ? "\\u{\($0.value)}" : String($0) }.joined() + "\""
}

// MARK: - Foundation

/// Whether Foundation's verdict on this input is comparable with ours. Intentional differences:
///   * Foundation guesses the encoding (UTF-16/32 when a NUL is among the first bytes, a UTF-8 BOM
///     is skipped); we read UTF-8 only and refuse a BOM. Skipped: a NUL in the first 4 bytes, a BOM.
///   * Depth: we allow 256 nested containers by default; Foundation's limit differs. Skipped: any
///     input nesting deeper than 256 (our "nesting too deep").
///   * A lone surrogate escape (`"\uD800"`): we decode it to U+FFFD (documented), Foundation rejects
///     it. Skipped: inputs containing `\u` followed by a D800...DFFF escape.
///   * Foundation accepts a trailing comma in arrays and objects (`[1,]`); we reject it. Compared
///     instead: the same input without that comma.
///   * Foundation drops a raw U+FEFF (a BOM character) at the start of a string or right after an
///     escape; we keep the exact text. Compared instead: both strings without any U+FEFF.
///   * Numbers are only checked for syntax here; Foundation also rejects ones it cannot represent.
///     Skipped: inputs we accept that contain a number Foundation cannot hold (see `numberFits`).
func compareWithFoundation(_ bytes: [UInt8], _ ours: Result<JSONNode, JSONError>) {
    guard String(validating: bytes, as: UTF8.self) != nil,
        !bytes.prefix(4).contains(0),
        !(bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF),
        !containsSurrogateEscape(bytes)
    else { return }
    if case .failure(let error) = ours, error.reason == "nesting too deep" { return }
    if case .success(let node) = ours, !numbersFit(node) { return }

    let theirs = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
    switch (ours, theirs) {
    case (.success(let node), .some(let object)):
        compareValues(node, object)
    case (.failure(let error), .some) where error.reason == "trailing comma":
        // Foundation tolerates trailing commas; we do not. Without that comma the verdicts must agree.
        var fixed = bytes
        fixed.remove(at: error.offset)
        compareWithFoundation(fixed, fixed.withUnsafeBytes { scan($0) })
    case (.failure(let error), .some):
        fail("Foundation accepts what we reject (\(error))")
    case (.success, .none):
        fail("Foundation rejects what we accept")
    case (.failure, .none):
        break
    }
}

func containsBOM(_ text: String) -> Bool {
    text.unicodeScalars.contains("\u{FEFF}")
}

func withoutBOM(_ text: String) -> String {
    var scalars = String.UnicodeScalarView()
    scalars.append(contentsOf: text.unicodeScalars.lazy.filter { $0 != "\u{FEFF}" })
    return String(scalars)
}

func containsSurrogateEscape(_ bytes: [UInt8]) -> Bool {
    guard bytes.count >= 6 else { return false }
    for index in 0..<bytes.count - 5
    where bytes[index] == UInt8(ascii: "\\")
        && bytes[index + 1] == UInt8(ascii: "u") && (bytes[index + 2] | 0x20) == UInt8(ascii: "d")
    {
        let next = bytes[index + 3] | 0x20
        if next == UInt8(ascii: "8") || next == UInt8(ascii: "9") || (next >= UInt8(ascii: "a") && next <= UInt8(ascii: "f")) {
            return true
        }
    }
    return false
}

/// Whether every number is one Foundation represents (a finite Double; integers within 64 bits).
func numbersFit(_ node: JSONNode) -> Bool {
    switch node.value {
    case .object(let members): return members.allSatisfy { numbersFit($0.value) }
    case .array(let elements): return elements.allSatisfy(numbersFit)
    case .number(let text):
        guard let value = Double(text), value.isFinite else { return false }
        // Very long mantissas or exponents: Foundation may fall back to Decimal or refuse.
        return text.utf8.count <= 24
    default: return true
    }
}

func compareValues(_ node: JSONNode, _ object: Any) {
    switch node.value {
    case .object(let members):
        guard let dictionary = object as? [String: Any] else { fail("Foundation: not an object") }
        // Keys are compared as Swift strings (canonical equivalence), as Foundation's dictionary does.
        let keys = Set(members.map(\.key))
        if keys.contains(where: containsBOM) {
            // Foundation drops some raw U+FEFF from strings, which can also merge keys.
            check(Set(keys.map(withoutBOM)) == Set(dictionary.keys.map(withoutBOM)), "Foundation: different object keys")
            return
        }
        check(keys == Set(dictionary.keys), "Foundation: different object keys \(keys.map(quoted)) vs \(dictionary.keys.map(quoted))")
        var counts: [String: Int] = [:]
        for member in members { counts[member.key, default: 0] += 1 }
        // Duplicate keys: we keep all members, Foundation keeps one; compare unique keys only.
        for member in members where counts[member.key] == 1 { compareValues(member.value, dictionary[member.key]!) }
    case .array(let elements):
        guard let array = object as? [Any] else { fail("Foundation: not an array") }
        check(array.count == elements.count, "Foundation: different array length")
        for (element, other) in zip(elements, array) { compareValues(element, other) }
    case .string(let text):
        guard let other = object as? String else { fail("Foundation: not a string") }
        check(
            other == text || withoutBOM(other) == withoutBOM(text),
            "Foundation: different string \(quoted(other)) vs \(quoted(text))")
    case .number, .bool:
        check(object is NSNumber || object is Bool || object is Int || object is Double, "Foundation: not a number")
    case .null:
        check(object is NSNull, "Foundation: not null")
    case .unmaterialized:
        fail("unmaterialized node in a full scan")
    }
}

// MARK: - Helpers

let knownReasons: Set<String> = [
    "empty input", "byte order mark", "unexpected character", "unexpected end of input", "trailing comma",
    "expected colon", "leading zero", "invalid number", "invalid literal", "unterminated string",
    "control character in string", "invalid escape", "invalid UTF-8", "nesting too deep", "trailing data",
]

func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
}

func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
    return hash
}

/// Reproducible random numbers (SplitMix64).
struct SplitMix64 {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// An invariant; a violation aborts (libFuzzer records the input as a crash).
@inline(__always)
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzJSONScanner invariant violated: \(message)")
}

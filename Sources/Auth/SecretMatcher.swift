import PersistorCore
import PersistorHTTP

/// A shared-secret check in a query parameter or a header.
struct SecretMatcher: Sendable {
    enum Place: Sendable {
        case query
        case header
    }

    let place: Place
    let name: String
    private let values: [[UInt8]]

    init(place: Place, settings: SecretSettings) {
        self.place = place
        self.name = settings.name
        self.values = settings.values.map { Array($0.utf8) }
    }

    var method: String { place == .query ? "querySecret" : "headerSecret" }

    /// `nil` when the request carries an accepted value.
    ///
    /// - absent → 401 "missing secret";
    /// - present more than once → 401 "multiple secrets" (no guessing which one counts);
    /// - undecodable percent-encoding → 401 "malformed secret";
    /// - otherwise compared with every configured value in constant time → 401 "secret mismatch".
    func check(_ head: HTTPRequestHead) -> AuthFailure? {
        let presented: [UInt8]
        switch place {
        case .header:
            let found = head.headers.values(for: name)
            guard found.count <= 1 else { return .unauthorized("multiple secrets", method) }
            guard let value = found.first else { return .unauthorized("missing secret", method, specificity: 0) }
            presented = Array(value.utf8)
        case .query:
            let found = QueryString.values(named: name, in: head.query)
            guard found.count <= 1 else { return .unauthorized("multiple secrets", method) }
            guard let raw = found.first else { return .unauthorized("missing secret", method, specificity: 0) }
            guard let decoded = try? PercentDecoding.decode(raw.utf8) else { return .unauthorized("malformed secret", method) }
            presented = decoded
        }
        return SecretMatcher.matchesAny(presented, values) ? nil : .unauthorized("secret mismatch", method)
    }

    /// Compares `presented` with every candidate — all of them, whatever matched — so the time
    /// taken does not depend on which value (if any) matched or where the first difference is.
    /// Only the candidates' lengths may show.
    static func matchesAny(_ presented: [UInt8], _ candidates: [[UInt8]]) -> Bool {
        var matched: UInt8 = 0
        for candidate in candidates {
            matched |= constantTimeEquals(presented, candidate)
        }
        return matched != 0
    }

    /// 1 when equal, else 0. The loop runs over the whole of `expected` regardless of the content.
    @inline(never)
    static func constantTimeEquals(_ presented: [UInt8], _ expected: [UInt8]) -> UInt8 {
        var difference: UInt8 = presented.count == expected.count ? 0 : 1
        presented.withUnsafeBufferPointer { given in
            expected.withUnsafeBufferPointer { wanted in
                for index in 0..<wanted.count {
                    let byte = index < given.count ? given[index] : 0
                    difference |= byte ^ wanted[index]
                }
            }
        }
        // 1 if difference == 0, else 0, without a data-dependent branch.
        return UInt8(truncatingIfNeeded: (UInt16(difference) &- 1) >> 8) & 1
    }
}

/// `application/x-www-form-urlencoded`-ish query parsing for auth parameters. Names are matched
/// after percent-decoding; `+` is kept as `+` (not a space), because secrets and tokens are opaque.
enum QueryString {
    /// The raw (still percent-encoded) values of every parameter named `name`, in order.
    static func values(named name: String, in query: Substring?) -> [Substring] {
        guard let query else { return [] }
        let wanted = Array(name.utf8)
        var found: [Substring] = []
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let key: Substring
            let value: Substring
            if let equals = pair.firstIndex(of: "=") {
                key = pair[..<equals]
                value = pair[pair.index(after: equals)...]
            } else {
                key = pair
                value = ""
            }
            if (try? PercentDecoding.decode(key.utf8)) == wanted { found.append(value) }
        }
        return found
    }
}

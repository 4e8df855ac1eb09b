import CryptoExtras
import PersistorCore

/// One usable signing key from a JWKS.
struct VerificationKey: Sendable {
    var kid: String
    /// The JWK's `alg`, if it names one; the token's `alg` must then equal it.
    var alg: String?
    var publicKey: _RSA.Signing.PublicKey
}

/// A parsed JWKS: the usable keys by `kid`.
///
/// A JWK is used only when `kty` is `RSA`, `use` (if present) is `sig`, `kid`, `n` and `e` are
/// present and the modulus has at least 2048 bits. Other entries (EC keys, encryption keys, short
/// keys) are skipped, not fatal. A document with no usable key at all is refused.
struct JWKSet: Sendable {
    var keys: [String: [VerificationKey]]
    /// Entries present in the document but skipped.
    var skipped: Int

    var count: Int { keys.values.reduce(0) { $0 + $1.count } }

    struct ParseError: Error, CustomStringConvertible {
        var description: String
    }

    static func parse(_ body: [UInt8]) throws(ParseError) -> JWKSet {
        guard let document = try? ClaimParser.parseObject(body) else {
            throw ParseError(description: "JWKS is not a JSON object")
        }
        guard let entries = document["keys"]?.arrayValue else {
            throw ParseError(description: "JWKS has no keys array")
        }
        var keys: [String: [VerificationKey]] = [:]
        var skipped = 0
        for entry in entries {
            guard let key = Self.key(from: entry) else {
                skipped += 1
                continue
            }
            keys[key.kid, default: []].append(key)
        }
        guard !keys.isEmpty else { throw ParseError(description: "JWKS has no usable RSA signing key") }
        return JWKSet(keys: keys, skipped: skipped)
    }

    private static func key(from entry: ClaimValue) -> VerificationKey? {
        guard let object = entry.objectValue,
            object["kty"]?.stringValue == "RSA",
            let kid = object["kid"]?.stringValue,
            let n = object["n"]?.stringValue.flatMap({ Base64URL.decode($0.utf8, strict: false) }),
            let e = object["e"]?.stringValue.flatMap({ Base64URL.decode($0.utf8, strict: false) }),
            !n.isEmpty, !e.isEmpty
        else { return nil }
        if let use = object["use"], use.stringValue != "sig" { return nil }
        var alg: String?
        if let value = object["alg"] {
            guard let name = value.stringValue else { return nil }
            alg = name
        }
        // swift-crypto refuses moduli under 2048 bits here.
        guard let publicKey = try? _RSA.Signing.PublicKey(n: n, e: e), publicKey.keySizeInBits >= 2048 else {
            return nil
        }
        return VerificationKey(kid: kid, alg: alg, publicKey: publicKey)
    }
}

/// Fetches a JWKS document. The real one is `URLSessionJWKSFetcher`; tests may substitute their own.
package protocol JWKSFetcher: Sendable {
    /// The response body of a successful (200) fetch, and the freshness lifetime from
    /// `Cache-Control: max-age` (minus `Age`) when the response carries one.
    func fetch(_ url: String) async throws -> (body: [UInt8], maxAge: Duration?)
}

/// Parses `Cache-Control` and `Age` into a freshness lifetime; `nil` when there is no `max-age`.
/// `no-store`/`no-cache` are treated as `max-age=0` (the cache then applies its floor).
func freshnessLifetime(cacheControl: String?, age: String?) -> Duration? {
    guard let cacheControl else { return nil }
    var maxAge: Int?
    for directive in cacheControl.split(separator: ",") {
        let parts = directive.split(separator: "=", maxSplits: 1)
        let name = parts[0].trimmingASCIIWhitespace().lowercased()
        if name == "no-store" || name == "no-cache" {
            maxAge = 0
            break
        }
        if name == "max-age", parts.count == 2 {
            var value = parts[1].trimmingASCIIWhitespace()
            if value.count >= 2, value.first == "\"", value.last == "\"" {
                value = value.dropFirst().dropLast()
            }
            if let seconds = Int(value), seconds >= 0 { maxAge = seconds }
        }
    }
    guard let maxAge else { return nil }
    let elapsed = age.flatMap { Int($0.trimmingASCIIWhitespace()) }.map { max(0, $0) } ?? 0
    return .seconds(max(0, maxAge - elapsed))
}

extension StringProtocol {
    func trimmingASCIIWhitespace() -> SubSequence {
        var start = startIndex
        var end = endIndex
        while start < end, self[start] == " " || self[start] == "\t" { start = index(after: start) }
        while end > start, self[index(before: end)] == " " || self[index(before: end)] == "\t" {
            end = index(before: end)
        }
        return self[start..<end]
    }
}

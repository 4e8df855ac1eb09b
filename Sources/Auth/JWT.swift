import Crypto
import CryptoExtras
import PersistorCore

/// A structurally valid JWS (compact serialization) whose signature is not yet checked.
struct ParsedToken: Sendable {
    var header: [String: ClaimValue]
    var claims: [String: ClaimValue]
    /// `base64url(header) "." base64url(payload)`: the bytes the signature covers.
    var signingInput: [UInt8]
    var signature: [UInt8]

    var alg: String? { header["alg"]?.stringValue }
    var kid: String? { header["kid"]?.stringValue }

    /// Splits and decodes a token. Exactly three segments; strict unpadded base64url; the header and
    /// the payload must be JSON objects. Returns the failure reason otherwise.
    static func parse(_ token: String) -> Result<ParsedToken, MalformedToken> {
        let bytes = Array(token.utf8)
        let parts = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else { return .failure(MalformedToken(detail: "not 3 segments")) }
        guard let headerBytes = Base64URL.decode(parts[0]),
            let payloadBytes = Base64URL.decode(parts[1]),
            let signature = Base64URL.decode(parts[2])
        else {
            return .failure(MalformedToken(detail: "bad base64url"))
        }
        guard let header = try? ClaimParser.parseObject(headerBytes),
            let claims = try? ClaimParser.parseObject(payloadBytes)
        else {
            return .failure(MalformedToken(detail: "bad JSON"))
        }
        let signingInput = Array(bytes[..<parts[1].endIndex])
        return .success(ParsedToken(header: header, claims: claims, signingInput: signingInput, signature: signature))
    }
}

/// A token that is not a well-formed JWS compact serialization (RFC 7515 §7.1); the route renders
/// `reason` in its 401.
struct MalformedToken: Error, Equatable {
    let detail: String

    var reason: String { "malformed token: \(detail)" }
}

/// The JWS algorithms this module can verify. Anything else is refused even when configured.
enum JWSAlgorithm {
    static let supported: Set<String> = ["RS256", "RS384", "RS512"]

    /// Verifies an RSASSA-PKCS1-v1_5 signature (RFC 7518 §3.3). Never PSS: swift-crypto's default
    /// padding is PSS, which RS* tokens do not use.
    static func verify(alg: String, key: _RSA.Signing.PublicKey, signingInput: [UInt8], signature: [UInt8]) -> Bool {
        let rsaSignature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        switch alg {
        case "RS256":
            return key.isValidSignature(rsaSignature, for: SHA256.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case "RS384":
            return key.isValidSignature(rsaSignature, for: SHA384.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        case "RS512":
            return key.isValidSignature(rsaSignature, for: SHA512.hash(data: signingInput), padding: .insecurePKCS1v1_5)
        default:
            return false
        }
    }
}

/// JOSE header checks common to every token method. Returns a reason on refusal.
///
/// - `alg` must be present, in `allowed` and implemented (so `none` and `HS*` are always refused:
///   there is no HMAC code path at all, so an RSA public key can never be used as an HMAC secret).
/// - `crit` must be absent: we understand no extension.
/// - `typ`, when present, must be `JWT`, `at+jwt` or their `application/` forms (case-insensitive).
/// - `kid` must be a string: keys come from a JWKS and are selected by `kid` only.
func checkJOSEHeader(_ token: ParsedToken, allowedAlgorithms: Set<String>) -> String? {
    guard let alg = token.header["alg"] else { return "malformed token: missing alg" }
    guard let algName = alg.stringValue else { return "malformed token: bad alg" }
    guard algName != "none", allowedAlgorithms.contains(algName) else { return "alg not allowed" }
    guard JWSAlgorithm.supported.contains(algName) else { return "alg not supported" }
    if token.header["crit"] != nil { return "crit header" }
    if let typ = token.header["typ"] {
        let accepted = ["jwt", "at+jwt", "application/jwt", "application/at+jwt"]
        guard let value = typ.stringValue, accepted.contains(value.lowercased()) else { return "bad typ" }
    }
    guard let kid = token.header["kid"] else { return "missing kid" }
    guard kid.stringValue != nil else { return "malformed token: bad kid" }
    return nil
}

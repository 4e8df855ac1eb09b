import PersistorCore
import PersistorHTTP

/// A token method (oidc or entra): its claim rules and where its keys come from.
struct TokenPolicy: Sendable {
    enum Kind: Sendable {
        case oidc(OIDCSettings)
        case entra(EntraSettings)
    }

    let kind: Kind
    let keys: JWKSCache
    /// Clock skew in seconds.
    let skew: Double

    var name: String {
        switch kind {
        case .oidc: "oidc"
        case .entra: "entra"
        }
    }

    private var issuers: [String] {
        switch kind {
        case .oidc(let settings): settings.issuers
        case .entra(let settings): settings.issuers
        }
    }

    private var audiences: [String] {
        switch kind {
        case .oidc(let settings): [settings.audience]
        case .entra(let settings): settings.audiences
        }
    }

    /// Verifies a parsed token whose JOSE header already passed `checkJOSEHeader`. On success
    /// returns the token's `exp`. Calls `completion` exactly once, synchronously unless the keys
    /// must be fetched.
    ///
    /// Order: issuer, dates, audience (cheap, and an obviously wrong token never causes a JWKS
    /// fetch), then key and signature, then the principal checks that answer 403 — only ever for a
    /// correctly signed token.
    func verify(_ token: ParsedToken, now: Double, completion: @escaping @Sendable (Result<Double, AuthFailure>) -> Void) {
        let exp: Double
        switch checkClaims(token.claims, now: now) {
        case .failure(let failure):
            completion(.failure(failure))
            return
        case .success(let value):
            exp = value
        }
        let alg = token.alg ?? ""
        let name = self.name
        keys.lookup(kid: token.kid ?? "") { [self] lookup in
            switch lookup {
            case .unavailable:
                completion(.failure(AuthFailure(status: 503, reason: "keys unavailable", method: name, specificity: 2)))
            case .unknownKid:
                completion(.failure(.unauthorized("unknown kid", name)))
            case .keys(let candidates):
                let usable = candidates.filter { $0.alg == nil || $0.alg == alg }
                guard !usable.isEmpty else {
                    completion(.failure(.unauthorized("key alg mismatch", name)))
                    return
                }
                let valid = usable.contains {
                    JWSAlgorithm.verify(
                        alg: alg, key: $0.publicKey, signingInput: token.signingInput,
                        signature: token.signature)
                }
                guard valid else {
                    completion(.failure(.unauthorized("bad signature", name)))
                    return
                }
                if let failure = checkPrincipal(token.claims) {
                    completion(.failure(failure))
                } else {
                    completion(.success(exp))
                }
            }
        }
    }

    /// `iss`, `exp`/`nbf`/`iat` (with skew) and `aud`. Returns `exp` on success.
    func checkClaims(_ claims: [String: ClaimValue], now: Double) -> Result<Double, AuthFailure> {
        let name = self.name
        func fail(_ reason: String, specificity: Int = 2) -> Result<Double, AuthFailure> {
            .failure(.unauthorized(reason, name, specificity: specificity))
        }
        guard let iss = claims["iss"]?.stringValue, issuers.contains(iss) else {
            return fail("iss mismatch", specificity: 1)
        }
        guard let expClaim = claims["exp"] else { return fail("missing exp") }
        guard let exp = expClaim.numberValue else { return fail("bad exp") }
        if now >= exp + skew { return fail("expired") }
        if let nbfClaim = claims["nbf"] {
            guard let nbf = nbfClaim.numberValue else { return fail("bad nbf") }
            if nbf > now + skew { return fail("not yet valid") }
        }
        if let iatClaim = claims["iat"] {
            guard let iat = iatClaim.numberValue else { return fail("bad iat") }
            if iat > now + skew { return fail("iat in future") }
        } else if case .oidc = kind {
            return fail("missing iat")
        }
        if case .oidc(let settings) = kind, let maxLifetime = settings.maxLifetime {
            if exp > now + maxLifetime.timeInterval + skew { return fail("exp too far in future") }
        }
        guard let aud = claims["aud"] else { return fail("missing aud") }
        let presented: [String]
        if let single = aud.stringValue {
            presented = [single]
        } else if let list = aud.arrayValue {
            presented = list.compactMap(\.stringValue)
        } else {
            presented = []
        }
        let accepted = audiences
        guard presented.contains(where: { accepted.contains($0) }) else { return fail("aud mismatch") }
        return .success(exp)
    }

    /// Who the (correctly signed) token is for: 403 reasons.
    func checkPrincipal(_ claims: [String: ClaimValue]) -> AuthFailure? {
        switch kind {
        case .oidc(let settings):
            guard let email = claims["email"]?.stringValue,
                settings.serviceAccounts.contains(where: { $0.caseInsensitiveEquals(email) })
            else {
                return .forbidden("email not allowed", name)
            }
            // Google sends a JSON boolean; very old tokens carried the string "true".
            let verified = claims["email_verified"]?.boolValue ?? (claims["email_verified"]?.stringValue == "true")
            guard verified else { return .forbidden("email not verified", name) }
            return nil
        case .entra(let settings):
            guard let tid = claims["tid"]?.stringValue, tid.caseInsensitiveEquals(settings.tenant) else {
                return .forbidden("tid mismatch", name)
            }
            // v1 tokens name the client in `appid`, v2 tokens in `azp`; `ver` says which.
            let version = claims["ver"]?.stringValue
            let useAzp = version == "2.0" || (version == nil && claims["appid"] == nil)
            let client = useAzp ? claims["azp"]?.stringValue : claims["appid"]?.stringValue
            guard let client, client.caseInsensitiveEquals(settings.appId) else {
                return .forbidden(useAzp ? "azp mismatch" : "appid mismatch", name)
            }
            if let role = settings.role {
                let roles = claims["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []
                guard roles.contains(role) else { return .forbidden("missing role", name) }
            }
            return nil
        }
    }
}

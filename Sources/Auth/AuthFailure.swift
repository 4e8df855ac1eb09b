/// One method's refusal, before the route combines the methods into an `AuthDecision`.
struct AuthFailure: Sendable, Error, Equatable {
    /// 401, 403 or 503.
    var status: Int
    /// Short and safe to log: never a token, a secret or a claim value.
    var reason: String
    /// The method that refused (`oidc`, `entra`, `querySecret`, `headerSecret`, or the token methods
    /// joined with `+` for failures before any one of them could be tried).
    var method: String
    /// How much the failure says about what the sender meant: 0 = the credential was absent,
    /// 1 = a credential was there but evidently meant for something else (wrong issuer, wrong
    /// scheme), 2 = a credential for this method that failed a check.
    var specificity: Int

    static func unauthorized(_ reason: String, _ method: String, specificity: Int = 2) -> AuthFailure {
        AuthFailure(status: 401, reason: reason, method: method, specificity: specificity)
    }

    static func forbidden(_ reason: String, _ method: String) -> AuthFailure {
        AuthFailure(status: 403, reason: reason, method: method, specificity: 2)
    }

    /// Which failure wins when every method refused: 503 (keys unavailable, the sender retries)
    /// over 403 over 401, then the most specific, then the first configured.
    func outranks(_ other: AuthFailure) -> Bool {
        func rank(_ status: Int) -> Int { status == 503 ? 3 : status == 403 ? 2 : 1 }
        if rank(status) != rank(other.status) { return rank(status) > rank(other.status) }
        return specificity > other.specificity
    }
}

/// One route's authentication block (a route's `auth` in docs/configuration.md). A request passing
/// any configured method is admitted. `allowedAlgorithms`, `maxTokenBytes` and
/// `verifiedTokenCacheSize` are tuning knobs with safe defaults that the file does not expose.
package struct AuthSettings: Sendable, Equatable {
    /// Google-signed OIDC ID token (Pub/Sub push).
    package var oidc: OIDCSettings?
    /// Microsoft Entra ID access token (Event Grid secure webhook).
    package var entra: EntraSettings?
    /// Shared secret in a query parameter (`name` is the parameter).
    package var querySecret: SecretSettings?
    /// Shared secret in a request header (`name` is the header).
    package var headerSecret: SecretSettings?
    /// Tolerance applied to `exp`, `nbf` and `iat`.
    package var clockSkew: Duration
    /// JWS `alg` values accepted. Only `RS256`, `RS384` and `RS512` are implemented; `none` and
    /// `HS*` are refused even if listed.
    package var allowedAlgorithms: Set<String>
    /// Longer bearer tokens are refused ("token too large") before any decoding.
    package var maxTokenBytes: Int
    /// Entries in the verified-token cache (each lives until its token's `exp` + skew).
    package var verifiedTokenCacheSize: Int

    package init(
        oidc: OIDCSettings? = nil,
        entra: EntraSettings? = nil,
        querySecret: SecretSettings? = nil,
        headerSecret: SecretSettings? = nil,
        clockSkew: Duration = .seconds(60),
        allowedAlgorithms: Set<String> = ["RS256"],
        maxTokenBytes: Int = 16 * 1024,
        verifiedTokenCacheSize: Int = 10_000
    ) {
        self.oidc = oidc
        self.entra = entra
        self.querySecret = querySecret
        self.headerSecret = headerSecret
        self.clockSkew = clockSkew
        self.allowedAlgorithms = allowedAlgorithms
        self.maxTokenBytes = maxTokenBytes
        self.verifiedTokenCacheSize = verifiedTokenCacheSize
    }

    /// True when no method is configured. A `RouteAuthenticator` built from empty settings refuses
    /// everything (fail closed); a route without auth should simply not have an authenticator.
    package var isEmpty: Bool {
        oidc == nil && entra == nil && querySecret == nil && headerSecret == nil
    }
}

/// Google OIDC ID token as Pub/Sub push sends it (`Authorization: Bearer`).
package struct OIDCSettings: Sendable, Equatable {
    /// Expected `aud` (compared exactly, case-sensitive).
    package var audience: String
    /// Accepted `email` claims (compared ASCII case-insensitively); `email_verified` must be true.
    package var serviceAccounts: [String]
    /// Accepted `iss` claims (exact).
    package var issuers: [String]
    /// Where the signing keys are fetched (JWKS). `https` is required except for loopback hosts.
    package var jwksURL: String
    /// Tokens whose `exp` lies further in the future than this (plus skew) are refused, as Google's
    /// own libraries do (Google ID tokens live one hour). `nil` disables the check.
    package var maxLifetime: Duration?

    package static let defaultIssuers = ["accounts.google.com", "https://accounts.google.com"]
    package static let defaultJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

    package init(
        audience: String,
        serviceAccounts: [String],
        issuers: [String] = OIDCSettings.defaultIssuers,
        jwksURL: String = OIDCSettings.defaultJWKSURL,
        maxLifetime: Duration? = .seconds(86_400)
    ) {
        self.audience = audience
        self.serviceAccounts = serviceAccounts
        self.issuers = issuers
        self.jwksURL = jwksURL
        self.maxLifetime = maxLifetime
    }
}

/// Microsoft Entra ID access token as Event Grid secure webhook delivery sends it.
package struct EntraSettings: Sendable, Equatable {
    /// Directory (tenant) id; the `tid` claim must equal it (ASCII case-insensitive).
    package var tenant: String
    /// Accepted `aud` claims (exact): the webhook app's client id GUID and/or App ID URI.
    package var audiences: [String]
    /// Expected `appid` (v1 tokens) / `azp` (v2 tokens): the application that obtained the token.
    package var appId: String
    /// Accepted `iss` claims (exact), `{tenant}` already substituted.
    package var issuers: [String]
    /// Required entry of the `roles` claim, if any.
    package var role: String?
    /// Where the signing keys are fetched, `{tenant}` already substituted.
    package var jwksURL: String

    /// The first-party application id Event Grid uses to obtain delivery tokens.
    package static let eventGridAppId = "4962773b-9cdb-44cf-a8bf-237846a00ab7"
    /// v1 and v2 issuer templates.
    package static let defaultIssuerTemplates = [
        "https://sts.windows.net/{tenant}/",
        "https://login.microsoftonline.com/{tenant}/v2.0",
    ]
    package static let defaultJWKSURLTemplate = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"

    /// `issuers` and `jwksURL` default to the templates above; `{tenant}` in them (given or
    /// default) is replaced by `tenant`.
    package init(
        tenant: String,
        audiences: [String],
        appId: String = EntraSettings.eventGridAppId,
        issuers: [String]? = nil,
        role: String? = nil,
        jwksURL: String? = nil
    ) {
        self.tenant = tenant
        self.audiences = audiences
        self.appId = appId
        self.issuers = (issuers ?? Self.defaultIssuerTemplates).map { $0.replacing("{tenant}", with: tenant) }
        self.role = role
        self.jwksURL = (jwksURL ?? Self.defaultJWKSURLTemplate).replacing("{tenant}", with: tenant)
    }
}

/// A shared secret: the request carries one of `values` in the named query parameter or header.
/// Several values allow rotation. Values are compared in constant time and never logged.
package struct SecretSettings: Sendable, Equatable {
    /// Query parameter name (exact) or header name (case-insensitive).
    package var name: String
    /// Accepted values (exact bytes; query values are percent-decoded first, `+` stays `+`).
    package var values: [String]

    package init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }
}

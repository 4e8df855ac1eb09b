/// One route's authentication block (a route's `auth` in docs/configuration.md). A request passing
/// any configured method is admitted. `allowedAlgorithms`, `maxTokenBytes` and
/// `verifiedTokenCacheSize` are tuning knobs with safe defaults that the file does not expose.
public struct AuthSettings: Sendable, Equatable {
    /// Google-signed OIDC ID token (Pub/Sub push).
    public var oidc: OIDCSettings?
    /// Microsoft Entra ID access token (Event Grid secure webhook).
    public var entra: EntraSettings?
    /// Shared secret in a query parameter (`name` is the parameter).
    public var querySecret: SecretSettings?
    /// Shared secret in a request header (`name` is the header).
    public var headerSecret: SecretSettings?
    /// Tolerance applied to `exp`, `nbf` and `iat`.
    public var clockSkew: Duration
    /// JWS `alg` values accepted. Only `RS256`, `RS384` and `RS512` are implemented; `none` and
    /// `HS*` are refused even if listed.
    public var allowedAlgorithms: Set<String>
    /// Longer bearer tokens are refused ("token too large") before any decoding.
    public var maxTokenBytes: Int
    /// Entries in the verified-token cache (each lives until its token's `exp` + skew).
    public var verifiedTokenCacheSize: Int

    public init(oidc: OIDCSettings? = nil,
                entra: EntraSettings? = nil,
                querySecret: SecretSettings? = nil,
                headerSecret: SecretSettings? = nil,
                clockSkew: Duration = .seconds(60),
                allowedAlgorithms: Set<String> = ["RS256"],
                maxTokenBytes: Int = 16 * 1024,
                verifiedTokenCacheSize: Int = 10_000) {
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
    public var isEmpty: Bool {
        oidc == nil && entra == nil && querySecret == nil && headerSecret == nil
    }
}

/// Google OIDC ID token as Pub/Sub push sends it (`Authorization: Bearer`).
public struct OIDCSettings: Sendable, Equatable {
    /// Expected `aud` (compared exactly, case-sensitive).
    public var audience: String
    /// Accepted `email` claims (compared ASCII case-insensitively); `email_verified` must be true.
    public var serviceAccounts: [String]
    /// Accepted `iss` claims (exact).
    public var issuers: [String]
    /// Where the signing keys are fetched (JWKS). `https` is required except for loopback hosts.
    public var jwksURL: String
    /// Tokens whose `exp` lies further in the future than this (plus skew) are refused, as Google's
    /// own libraries do (Google ID tokens live one hour). `nil` disables the check.
    public var maxLifetime: Duration?

    public static let defaultIssuers = ["accounts.google.com", "https://accounts.google.com"]
    public static let defaultJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

    public init(audience: String,
                serviceAccounts: [String],
                issuers: [String] = OIDCSettings.defaultIssuers,
                jwksURL: String = OIDCSettings.defaultJWKSURL,
                maxLifetime: Duration? = .seconds(86_400)) {
        self.audience = audience
        self.serviceAccounts = serviceAccounts
        self.issuers = issuers
        self.jwksURL = jwksURL
        self.maxLifetime = maxLifetime
    }
}

/// Microsoft Entra ID access token as Event Grid secure webhook delivery sends it.
public struct EntraSettings: Sendable, Equatable {
    /// Directory (tenant) id; the `tid` claim must equal it (ASCII case-insensitive).
    public var tenant: String
    /// Accepted `aud` claims (exact): the webhook app's client id GUID and/or App ID URI.
    public var audiences: [String]
    /// Expected `appid` (v1 tokens) / `azp` (v2 tokens): the application that obtained the token.
    public var appId: String
    /// Accepted `iss` claims (exact), `{tenant}` already substituted.
    public var issuers: [String]
    /// Required entry of the `roles` claim, if any.
    public var role: String?
    /// Where the signing keys are fetched, `{tenant}` already substituted.
    public var jwksURL: String

    /// The first-party application id Event Grid uses to obtain delivery tokens.
    public static let eventGridAppId = "4962773b-9cdb-44cf-a8bf-237846a00ab7"
    /// v1 and v2 issuer templates.
    public static let defaultIssuerTemplates = [
        "https://sts.windows.net/{tenant}/",
        "https://login.microsoftonline.com/{tenant}/v2.0",
    ]
    public static let defaultJWKSURLTemplate = "https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"

    /// `issuers` and `jwksURL` default to the templates above; `{tenant}` in them (given or
    /// default) is replaced by `tenant`.
    public init(tenant: String,
                audiences: [String],
                appId: String = EntraSettings.eventGridAppId,
                issuers: [String]? = nil,
                role: String? = nil,
                jwksURL: String? = nil) {
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
public struct SecretSettings: Sendable, Equatable {
    /// Query parameter name (exact) or header name (case-insensitive).
    public var name: String
    /// Accepted values (exact bytes; query values are percent-decoded first, `+` stays `+`).
    public var values: [String]

    public init(name: String, values: [String]) {
        self.name = name
        self.values = values
    }
}

import Logging
import PersistorAuth
import PersistorHTTP

extension AuthSettings {
    /// The auth module's settings for a route's `auth` block.
    init(_ config: AuthConfig) {
        self.init(oidc: config.oidc, entra: config.entra, querySecret: config.querySecret,
                  headerSecret: config.headerSecret, clockSkew: config.clockSkew)
    }
}

/// Runs a route's handler only for requests its authenticator admits; others get 401/403/503 and
/// never reach the decoders or the archive. `OPTIONS` (the CloudEvents handshake) passes without
/// auth: it stores nothing (design §2).
func authenticated(_ handler: @escaping Router.Handler, by authenticator: RouteAuthenticator?) -> Router.Handler {
    guard let authenticator else { return handler }
    return { request, respond in
        if request.head.method == "OPTIONS" {
            handler(request, respond)
            return
        }
        authenticator.authenticate(request.head) { decision in
            switch decision {
            case .allowed:
                handler(request, respond)
            case .denied(let status, _, let challenge):
                var headers = HTTPHeaders()
                if let challenge { headers.add("WWW-Authenticate", challenge) }
                switch status {
                case 403: respond(.text(403, "forbidden", headers: headers))
                case 503:
                    headers.add("Retry-After", "5")
                    respond(.text(503, "authentication keys unavailable; retry later", headers: headers))
                default: respond(.text(401, "authentication required", headers: headers))
                }
            }
        }
    }
}

import Logging
import PersistorAuth
import PersistorHTTP

/// A route's admission check: its authenticator decides from the head, before the body is read, so
/// refused senders get 401/403/503 without `100 Continue`, hold no body bytes, and never reach the
/// decoders or the archive. `OPTIONS` (the CloudEvents handshake) passes without auth: it stores
/// nothing (docs/deliveries-and-auth.md#the-options-handshake).
func admission(by authenticator: RouteAuthenticator?) -> Router.Admission? {
    guard let authenticator else { return nil }
    return { head, admit in
        if head.method == "OPTIONS" {
            admit(nil)
            return
        }
        authenticator.authenticate(head) { decision in
            switch decision {
            case .allowed:
                admit(nil)
            case .denied(let status, _, let challenge):
                var headers = HTTPHeaders()
                if let challenge { headers.add("WWW-Authenticate", challenge) }
                switch status {
                case 403: admit(.text(403, "forbidden", headers: headers))
                case 503:
                    headers.add("Retry-After", "5")
                    admit(.text(503, "authentication keys unavailable; retry later", headers: headers))
                default: admit(.text(401, "authentication required", headers: headers))
                }
            }
        }
    }
}

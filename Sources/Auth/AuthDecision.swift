/// The outcome of authenticating one request.
package enum AuthDecision: Sendable, Equatable {
    /// Admitted; `method` names the auth method that passed (for logs and metrics).
    case allowed(method: String)
    /// Refused: `status` is 401 (missing/invalid credentials), 403 (valid but wrong principal) or
    /// 503 (keys unavailable: the sender should retry). `reason` is safe to log: never a secret.
    case denied(status: Int, reason: String, wwwAuthenticate: String?)
}

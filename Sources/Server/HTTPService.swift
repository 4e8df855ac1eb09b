/// What the server calls for each request. Both methods run on the connection's queue and
/// must not block; `admit` and `respond` may be called later from any thread, exactly once.
package protocol HTTPService: Sendable {
    /// Called when a request's head has arrived, before any of its body is read: `admit(nil)` lets
    /// the body be read and the request go to `handle`; `admit(response)` ends the request there
    /// (its body is not read, no `100 Continue` is sent, and a connection with an unread body
    /// closes afterwards), e.g. for an unknown path, a body over the route's limit or failed
    /// authentication (credentials are all in the head, docs/deliveries-and-auth.md#authentication).
    func check(_ head: HTTPRequestHead, admit: @escaping @Sendable (HTTPResponse?) -> Void)

    func handle(_ request: HTTPRequest, respond: @escaping @Sendable (HTTPResponse) -> Void)
}

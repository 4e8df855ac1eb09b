import Foundation
import PersistorTestSupport
import Testing

/// Tokens minted by google-auth (Pub/Sub push shape) and PyJWT (Entra shape) with a throwaway key,
/// JWKS served by a local HTTP server, posted to the running binary: only valid ones are archived.
@Suite(.serialized) struct AuthEndToEndTests {
    static let audience = "https://persistor.test/pubsub"
    static let tenant = "11111111-aaaa-bbbb-cccc-222222222222"

    /// A JWKS directory served by `python -m http.server` on a free loopback port.
    final class KeyServer {
        let directory: TemporaryDirectory
        let process: Process
        let port: Int
        let tokens: [String: String]

        init() throws {
            directory = try TemporaryDirectory("persistor-jwks")
            let minted = try runPythonTool("mint_tokens.py", [directory.path, AuthEndToEndTests.audience, AuthEndToEndTests.tenant])
            tokens = try #require(minted["tokens"] as? [String: String])
            port = try PersistorProcess.freePort()
            process = Process()
            process.executableURL = URL(fileURLWithPath: try testPython())
            process.arguments = ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", directory.path]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 {
                if (try? RawHTTPClient(port: port, timeout: 1)) != nil { return }
                Thread.sleep(forTimeInterval: 0.05)
            }
            throw TestFailure("the JWKS server did not start")
        }

        var jwksURL: String { "http://127.0.0.1:\(port)/jwks.json" }

        deinit {
            // SIGKILL: the child inherits the test runner's signal mask, which may block SIGTERM.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            directory.remove()
        }
    }

    func post(_ server: PersistorProcess, path: String, token: String?, id: String, query: String = "") throws -> RawHTTPResponse {
        let client = try server.connect()
        var headers = [("Content-Type", "application/json")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        let body = #"{"message":{"data":"aGk=","messageId":"\#(id)"},"subscription":"projects/p/subscriptions/s"}"#
        try client.send(RawHTTPClient.request("POST", path + query, headers: headers, body: body))
        return try client.readResponse()
    }

    @Test func googleOIDCTokensFromGoogleAuth() throws {
        let keys = try KeyServer()
        let server = try PersistorProcess(
            config: """
                routes:
                  - name: orders
                    path: /pubsub
                    kind: pubsub
                    auth:
                      oidc:
                        audience: \(Self.audience)
                        serviceAccounts: [pusher@proj.iam.gserviceaccount.com]
                        jwksURL: \(keys.jwksURL)
                """)
        let expectations: [(String, Int)] = [
            ("google_valid", 204), ("google_bare_issuer", 204),
            ("google_wrong_aud", 401), ("google_wrong_iss", 401), ("google_expired", 401),
            ("google_other_key", 401), ("hs256", 401),
            ("google_wrong_email", 403), ("google_unverified_email", 403),
        ]
        for (name, status) in expectations {
            let token = try #require(keys.tokens[name])
            let response = try post(server, path: "/pubsub", token: token, id: name)
            #expect(response.status == status, "\(name)")
            if status == 401 { #expect(response.header("WWW-Authenticate")?.hasPrefix("Bearer") == true, "\(name)") }
        }
        let missing = try post(server, path: "/pubsub", token: nil, id: "no-token")
        #expect(missing.status == 401)
        let viaQuery = try post(
            server, path: "/pubsub", token: nil, id: "query-token", query: "?access_token=\(try #require(keys.tokens["google_valid"]))")
        #expect(viaQuery.status == 204)

        let archived = Set(try allRecords(server.store).compactMap(\.id))
        #expect(archived == ["google_valid", "google_bare_issuer", "query-token"], "only authenticated deliveries are archived")
        for (name, _) in expectations { #expect(!server.log.contains(keys.tokens[name] ?? "<missing>"), "tokens are never logged") }
    }

    @Test func entraTokensFromPyJWT() throws {
        let keys = try KeyServer()
        let server = try PersistorProcess(
            config: """
                routes:
                  - name: grid
                    path: /eventgrid
                    kind: eventgrid
                    auth:
                      entra:
                        tenant: \(Self.tenant)
                        audience: \(Self.audience)
                        jwksURL: \(keys.jwksURL)
                """)
        func post(_ name: String) throws -> Int {
            let client = try server.connect()
            let body = #"[{"id":"\#(name)","eventType":"t","subject":"s","eventTime":"2026-11-26T19:00:00Z","data":{}}]"#
            try client.send(
                RawHTTPClient.request(
                    "POST", "/eventgrid",
                    headers: [
                        ("Content-Type", "application/json"), ("Authorization", "Bearer \(try #require(keys.tokens[name]))"),
                    ], body: body))
            return try client.readResponse().status
        }
        #expect(try post("entra_v1_valid") == 200)
        #expect(try post("entra_v2_valid") == 200)
        #expect(try post("entra_foreign_appid") == 403)
        let otherTenant = try post("entra_other_tenant")
        #expect(otherTenant == 401 || otherTenant == 403)
        #expect(Set(try allRecords(server.store).compactMap(\.id)) == ["entra_v1_valid", "entra_v2_valid"])

        // The CloudEvents handshake is answered without auth and stores nothing.
        let client = try server.connect()
        try client.send(RawHTTPClient.request("OPTIONS", "/eventgrid", headers: [("WebHook-Request-Origin", "eventgrid.azure.net")]))
        #expect(try client.readResponse().status == 200)
    }

    @Test func sharedSecretsInQueryAndHeader() throws {
        let server = try PersistorProcess(
            config: """
                routes:
                  - name: orders
                    path: /pubsub
                    kind: pubsub
                    auth:
                      querySecret: { param: token, values: ["old-secret", "${NEW_SECRET}"] }
                  - name: grid
                    path: /eventgrid
                    kind: eventgrid
                    auth:
                      headerSecret: { header: X-Delivery-Secret, values: ["grid-secret"] }
                """, environment: ["NEW_SECRET": "new-secret"])
        #expect(try post(server, path: "/pubsub", token: nil, id: "old", query: "?token=old-secret").status == 204)
        #expect(try post(server, path: "/pubsub", token: nil, id: "new", query: "?token=new-secret").status == 204)
        #expect(try post(server, path: "/pubsub", token: nil, id: "wrong", query: "?token=nope").status == 401)
        #expect(try post(server, path: "/pubsub", token: nil, id: "missing").status == 401)

        let client = try server.connect()
        try client.send(
            RawHTTPClient.request(
                "POST", "/eventgrid", headers: [("X-Delivery-Secret", "grid-secret")],
                body: #"[{"id":"g1","eventType":"t","data":{}}]"#))
        #expect(try client.readResponse().status == 200)
        try client.send(RawHTTPClient.request("POST", "/eventgrid?X-Delivery-Secret=grid-secret", body: #"[{"id":"g2","eventType":"t","data":{}}]"#))
        #expect(try client.readResponse().status == 401, "a header secret in the query string is refused")

        #expect(Set(try allRecords(server.store).compactMap(\.id)) == ["old", "new", "g1"])
        #expect(!server.log.contains("old-secret") && !server.log.contains("new-secret") && !server.log.contains("grid-secret"))
    }
}

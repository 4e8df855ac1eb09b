import Foundation
import PersistorTestSupport
import PersistorTesting
import Testing

/// How the configuration becomes a server: which routes answer, which refuse, what the probes
/// say. In process, against an in-memory store: each test starts a whole Persistor in milliseconds.
/// The deliveries themselves (every shape, every SDK) are EndToEndTests' business.
@Suite("Persistor wiring")
struct PersistorWiringTests {
    // The push example of https://cloud.google.com/pubsub/docs/push.
    static let push =
        #"{"message":{"attributes":{"key":"value"},"data":"SGVsbG8gQ2xvdWQgUHViL1N1YiEgSGVyZSBpcyBteSBtZXNzYWdlIQ==","messageId":"2070443601311540","publishTime":"2021-02-26T19:13:55.749Z"},"subscription":"projects/myproject/subscriptions/mysubscription"}"#
    static let json = [("Content-Type", "application/json")]

    static let secretRoute = """
        routes:
          - name: orders
            path: /orders
            kind: pubsub
            auth:
              headerSecret:
                header: X-Push-Secret
                values: ["${PUSH_SECRET}"]
        """

    @Test("the default Pub/Sub route answers a push 204 once its record is in the store")
    func defaultPubSubRoute() async throws {
        let store = InMemoryBlobWriter()
        try await withPersistor(.inProcess, store: .writer(store)) { client in
            let response = try await client.execute("POST", "/pubsub", headers: Self.json, body: Self.push)
            #expect(response.status == 204, "\(response.status) \(response.bodyText)")
            // The answer comes after the put returned: the record is already there.
            let records = try store.records()
            #expect(records.count == 1)
            #expect(records.first?["id"] as? String == "2070443601311540")
            #expect(records.first?["route"] as? String == "pubsub")
            #expect(records.first?["data"] as? String == "Hello Cloud Pub/Sub! Here is my message!")
        }
    }

    @Test("the default Event Grid route answers the subscription validation handshake with its code")
    func defaultEventGridRoute() async throws {
        let store = InMemoryBlobWriter()
        // From https://learn.microsoft.com/azure/event-grid/webhook-event-delivery#validation-details.
        let validation =
            #"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2018-01-25T22:12:19.4556811Z","metadataVersion":"1","dataVersion":"1"}]"#
        try await withPersistor(.inProcess, store: .writer(store)) { client in
            let response = try await client.execute(
                "POST", "/eventgrid", headers: Self.json + [("aeg-event-type", "SubscriptionValidation")],
                body: validation)
            #expect(response.status == 200, "\(response.status) \(response.bodyText)")
            let answer = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: String]
            #expect(answer == ["validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"])
            #expect(store.puts.isEmpty, "a validation event is answered, not archived")
        }
    }

    @Test("a route with a shared secret refuses a delivery without it (401) and admits one with it")
    func sharedSecretRoute() async throws {
        let store = InMemoryBlobWriter()
        try await withPersistor(
            .inProcess, config: Self.secretRoute, environment: ["PUSH_SECRET": "s3cret"],
            store: .writer(store)
        ) { client in
            let anonymous = try await client.execute("POST", "/orders", headers: Self.json, body: Self.push)
            #expect(anonymous.status == 401)
            let wrong = try await client.execute("POST", "/orders", headers: Self.json + [("X-Push-Secret", "guess")], body: Self.push)
            #expect(wrong.status == 401)
            #expect(store.puts.isEmpty, "refused deliveries never reach the store")
            let admitted = try await client.execute("POST", "/orders", headers: Self.json + [("X-Push-Secret", "s3cret")], body: Self.push)
            #expect(admitted.status == 204, "\(admitted.status) \(admitted.bodyText)")
            #expect(try store.records().map { $0["route"] as? String } == ["orders"])
            #expect(try await client.execute("POST", "/pubsub", body: Self.push).status == 404, "the file's routes replace the defaults")
        }
    }

    @Test("/healthz answers 200, and /readyz 200 while the store probes fine")
    func probesWhenHealthy() async throws {
        let store = InMemoryBlobWriter()
        try await withPersistor(.inProcess, store: .writer(store)) { client in
            let health = try await client.execute("GET", "/healthz")
            #expect(health.status == 200 && health.bodyText == "ok\n")
            let ready = try await client.execute("GET", "/readyz")
            #expect(ready.status == 200 && ready.bodyText == "ready\n")
            #expect(store.probes >= 1, "the store was probed at start-up")
        }
    }

    @Test("/readyz answers 503 with the reason while the store's probe fails, and 200 once it recovers")
    func readinessFollowsTheProbe() async throws {
        let store = InMemoryBlobWriter()
        store.failProbes(.init(status: 403, code: "AccessDenied", message: "no write permission", retryable: false))
        try await withPersistor(.inProcess, store: .writer(store)) { client in
            let ready = try await client.execute("GET", "/readyz")
            #expect(ready.status == 503)
            #expect(ready.bodyText == "store failing: no write permission (HTTP 403) (AccessDenied)\n")
            #expect(ready.header("Retry-After") == "5")
            #expect(try await client.execute("GET", "/healthz").status == 200, "liveness does not depend on the store")
            #expect(client.log.contains("store failing; readiness is 503 until it recovers"))
            store.heal()
            // StoreHealth probes every 2 s while failing.
            let deadline = ContinuousClock.now + .seconds(15)
            var status = 503
            while status != 200 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
                status = try await client.execute("GET", "/readyz").status
            }
            #expect(status == 200, "readiness recovers without traffic")
        }
    }

    @Test("an unknown path is answered 404, a wrong method 405 with the methods the route takes")
    func unknownPathsAndMethods() async throws {
        try await withPersistor(.inProcess, store: .writer(InMemoryBlobWriter())) { client in
            #expect(try await client.execute("POST", "/nowhere", body: Self.push).status == 404)
            #expect(try await client.execute("GET", "/pubsub/extra").status == 404, "paths match exactly")
            let get = try await client.execute("GET", "/pubsub")
            #expect(get.status == 405)
            #expect(get.header("Allow") == "POST")
            let put = try await client.execute("PUT", "/eventgrid", body: "[]")
            #expect(put.status == 405)
            #expect(put.header("Allow") == "POST, OPTIONS")
            let post = try await client.execute("POST", "/healthz")
            #expect(post.status == 405)
            #expect(post.header("Allow") == "GET, HEAD")
        }
    }

    @Test("a delivery the store cannot take is answered 503 with Retry-After, and /readyz says why")
    func failingStore() async throws {
        let store = InMemoryBlobWriter()
        try await withPersistor(.inProcess, store: .writer(store)) { client in
            store.failPuts(.init(status: 500, message: "internal error", retryable: true))
            let response = try await client.execute("POST", "/pubsub", headers: Self.json, body: Self.push)
            #expect(response.status == 503, "never 4xx: the sender must retry")
            #expect(response.header("Retry-After") == "5")
            #expect(response.bodyText == "archive store unavailable; retry later\n")
            #expect(store.puts.isEmpty)
            let ready = try await client.execute("GET", "/readyz")
            #expect(ready.status == 503 && ready.bodyText == "store failing: internal error (HTTP 500)\n", "\(ready.bodyText)")
            #expect(client.log.contains("archive write failed"))
        }
    }
}

/// Token routes in process: the signing keys come from a `StaticJWKSFetcher`, so no test reaches
/// Google's JWKS endpoint.
@Suite("Persistor wiring: token routes")
struct PersistorTokenRouteTests {
    static let key = Result { try TestSigningKey(kid: "k1") }
    static let audience = "https://persistor.example.com/orders"
    static let pusher = "pusher@my-project.iam.gserviceaccount.com"
    static let config = """
        routes:
          - name: orders
            path: /orders
            kind: pubsub
            auth:
              oidc:
                audience: \(audience)
                serviceAccounts: [\(pusher)]
        """

    @Test("an oidc route fetches its keys at start-up and admits only a Google ID token for its audience and service account")
    func oidcRoute() async throws {
        let key = try Self.key.get()
        let keys = StaticJWKSFetcher(keys: [key])
        let store = InMemoryBlobWriter()
        try await withPersistor(.inProcess, config: Self.config, store: .writer(store), jwks: keys) { client in
            // The prefetch runs beside start-up; give it a moment on a busy machine.
            let deadline = ContinuousClock.now + .seconds(5)
            while keys.fetchedURLs.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
            #expect(keys.fetchedURLs == ["https://www.googleapis.com/oauth2/v3/certs"], "prefetched from the default JWKS URL")
            let anonymous = try await client.execute("POST", "/orders", headers: PersistorWiringTests.json, body: PersistorWiringTests.push)
            #expect(anonymous.status == 401)
            #expect(anonymous.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            let otherAudience = try key.googleIDToken(audience: "https://elsewhere.example.com/", email: Self.pusher)
            let refused = try await client.execute(
                "POST", "/orders", headers: PersistorWiringTests.json + [("Authorization", "Bearer \(otherAudience)")],
                body: PersistorWiringTests.push)
            #expect(refused.status == 401)
            let stranger = try key.googleIDToken(audience: Self.audience, email: "someone@other-project.iam.gserviceaccount.com")
            let forbidden = try await client.execute(
                "POST", "/orders", headers: PersistorWiringTests.json + [("Authorization", "Bearer \(stranger)")],
                body: PersistorWiringTests.push)
            #expect(forbidden.status == 403, "a correctly signed token for another principal")
            #expect(store.puts.isEmpty)
            let token = try key.googleIDToken(audience: Self.audience, email: Self.pusher)
            let admitted = try await client.execute(
                "POST", "/orders", headers: PersistorWiringTests.json + [("Authorization", "Bearer \(token)")],
                body: PersistorWiringTests.push)
            #expect(admitted.status == 204, "\(admitted.status) \(admitted.bodyText)")
            #expect(try store.records().count == 1)
            #expect(keys.fetchedURLs.count == 1, "every request used the keys fetched at start-up")
        }
    }

    @Test("an oidc route answers 503 with Retry-After while its signing keys cannot be fetched")
    func oidcRouteWithoutKeys() async throws {
        let key = try Self.key.get()
        let keys = StaticJWKSFetcher(keys: [key])
        keys.setFailing(true)
        let store = InMemoryBlobWriter()
        try await withPersistor(.inProcess, config: Self.config, store: .writer(store), jwks: keys) { client in
            let token = try key.googleIDToken(audience: Self.audience, email: Self.pusher)
            let response = try await client.execute(
                "POST", "/orders", headers: PersistorWiringTests.json + [("Authorization", "Bearer \(token)")],
                body: PersistorWiringTests.push)
            #expect(response.status == 503, "the sender retries; a 401 would make Pub/Sub give up on a good token")
            #expect(response.header("Retry-After") == "5")
            #expect(store.puts.isEmpty)
        }
    }
}

/// The same test in both modes: the kit's API does not depend on where the server runs.
@Suite("Persistor wiring in both modes")
struct PersistorModesTests {
    @Test(
        "a shared-secret route archives an admitted push to a directory store",
        arguments: [PersistorTestMode.inProcess, .binary])
    func sharedSecretRouteArchives(_ mode: PersistorTestMode) async throws {
        try await withPersistor(mode, config: PersistorWiringTests.secretRoute, environment: ["PUSH_SECRET": "s3cret"]) { client in
            #expect(client.mode == mode)
            #expect(try await client.execute("GET", "/readyz").status == 200)
            let headers = PersistorWiringTests.json
            #expect(try await client.execute("POST", "/orders", headers: headers, body: PersistorWiringTests.push).status == 401)
            let admitted = try await client.execute(
                "POST", "/orders", headers: headers + [("X-Push-Secret", "s3cret")],
                body: PersistorWiringTests.push)
            #expect(admitted.status == 204, "\(admitted.status) \(admitted.bodyText)")
            let directory = try #require(client.storeDirectory)
            let records = try ArchiveReader(directory).records()
            #expect(records.map { $0["id"] as? String } == ["2070443601311540"])
            #expect(client.log.contains("persistor serving"))
        }
    }
}

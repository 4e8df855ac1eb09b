import Foundation
import PersistorTestSupport
import Testing

@Suite struct RouteLimitTests {
    @Test func aLargerRouteLimitDoesNotRaiseTheLimitOfOtherRoutes() throws {
        let server = try PersistorProcess(
            config: """
                server:
                  maxBodyBytes: 1KiB
                routes:
                  - name: big
                    path: /big
                    kind: pubsub
                    delivery: unwrapped
                    maxBodyBytes: 64KiB
                  - name: small
                    path: /small
                    kind: pubsub
                    delivery: unwrapped
                """)
        let body = [UInt8](repeating: 0x61, count: 4096)
        for (path, status) in [("/big", 204), ("/small", 413)] {
            let client = try server.connect()
            try client.send(RawHTTPClient.request("POST", path, body: body))
            #expect(try client.readResponse().status == status, "\(path)")
        }
        #expect(try allRecords(server.store).map { $0.fields["route"] as? String } == ["big"])
    }
}

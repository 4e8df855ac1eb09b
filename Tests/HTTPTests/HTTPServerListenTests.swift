import PersistorHTTP
import Testing

@Suite struct HTTPServerListenTests {
    @Test("a listen port outside 0-65535 is refused, not truncated to its low 16 bits", arguments: [65536, 70000, -1])
    func outOfRangePortIsRefused(_ port: Int) throws {
        let server = HTTPServer(settings: HTTPServerSettings(host: "127.0.0.1", port: port, loops: 1), service: Router())
        #expect(throws: (any Error).self) { try server.start() }
    }
}

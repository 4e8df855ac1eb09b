import Foundation
import PersistorStores
import PersistorTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP listener on 127.0.0.1 that never accepts or answers: connections complete (backlog)
/// and then hang, like a store that stopped responding.
private final class SilentListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = in_addr_t(0x7F00_0001).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard bound == 0, named == 0, listen(fd, 128) == 0 else {
            close(fd)
            throw TestFailure("cannot listen on 127.0.0.1")
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

@Suite struct URLSessionTransportTests {
    /// Many attempts timing out at once used to deadlock FoundationNetworking (a cancelled
    /// `data(for:)`), freezing every later store request; the deadline must hold every time.
    @Test(.timeLimit(.minutes(1)))
    func attemptsAgainstASilentStoreTimeOutOnTimeEveryTime() async throws {
        let listener = try SilentListener()
        let transport = URLSessionTransport()
        let request = StoreHTTPRequest(
            method: "PUT", url: URL(string: "http://127.0.0.1:\(listener.port)/bkt/k")!,
            headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
        for _ in 0..<5 {
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        do {
                            _ = try await transport.send(request, timeout: .milliseconds(300))
                            Issue.record("a silent store answered")
                        } catch let error as URLError {
                            #expect(error.code == .timedOut, "\(error)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(250) && elapsed < .seconds(3), "\(elapsed)")
        }
    }
}

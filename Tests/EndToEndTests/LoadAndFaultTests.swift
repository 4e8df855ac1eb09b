import Foundation
import PersistorTestSupport
import Testing

/// Misbehaving senders and heavy load against the real binary (docs/operations.md#limits): bounded memory,
/// backpressure instead of growth, and well-behaved clients still served.
@Suite("Load, backpressure and hostile clients end to end", .serialized)
struct LoadAndFaultTests {
    /// Peak resident set size of a process (VmHWM), in bytes.
    static func peakRSS(_ pid: Int32) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        else {
            throw TestFailure("no VmHWM in /proc/\(pid)/status")
        }
        return kib * 1024
    }

    @Test("in-flight body budget: a body that does not fit as it arrives gets 503 + Retry-After; the budget comes back after answers and resets")
    func inFlightBodyBudget() throws {
        let server = try PersistorProcess(config: "server:\n  maxInFlightBodyBytes: 300KiB\n")
        let big = pseudoRandomBytes(count: 150_000, seed: 7)
        // A holds 200 KB of budget: all of its body but the last bytes has arrived.
        let holder = try server.connect()
        let held = pubsubPost(id: "held", payload: big)
        let headEnd = held.count - 1_000
        try holder.send(Array(held[..<headEnd]))
        usleep(300_000)

        // B's body does not fit next to A's: refused once its bytes would exceed the budget (the
        // budget counts bytes received, never an announced length;
        // docs/operations.md#hostile-and-broken-clients).
        let refused = try server.connect()
        try? refused.send(pubsubPost(id: "refused", payload: big))
        let answer = try refused.readResponse()
        #expect(answer.status == 503)
        #expect(answer.header("Retry-After") == "1")
        #expect(answer.closesConnection)

        // A completes and is stored; then the same request as B fits.
        try holder.send(Array(held[headEnd...]))
        #expect(try holder.readResponse().status == 204)
        #expect(
            try server.connect().perform(
                "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                body: wrappedEnvelope(id: "after", data: big)
            ).status == 204)

        // A reset in the middle of a body gives its reservation back too.
        for round in 0..<3 {
            let aborted = try server.connect()
            try aborted.send(Array(pubsubPost(id: "reset-\(round)", payload: big).prefix(50_000)))
            usleep(200_000)
            aborted.reset()
            usleep(100_000)
            #expect(
                try server.connect().perform(
                    "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                    body: wrappedEnvelope(id: "after-reset-\(round)", data: big)
                ).status == 204,
                "round \(round): budget leaked by a reset connection")
        }
        let counts = try archivedIDCounts(server.store)
        #expect(counts["held"] == 1 && counts["after"] == 1 && counts["refused"] == nil)
        #expect(counts.keys.filter { $0.hasPrefix("reset-") }.isEmpty)
    }

    @Test("1,000 connections sending one header byte per second do not slow a well-behaved sender; they get 408")
    func thousandSlowClients() throws {
        let server = try PersistorProcess(config: "server:\n  headerTimeout: 4s\n")
        var slow: [RawHTTPClient] = []
        let head = Array("POST /pubsub HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".utf8)
        for _ in 0..<1000 { slow.append(try RawHTTPClient(port: server.port, timeout: 10)) }
        let steady = SteadyClient(port: server.port, name: "steady", interval: 0.02)
        var latencies: [Double] = []
        let probe = try server.connect()
        for second in 0..<3 {
            for client in slow { try client.send([head[second]]) }
            for i in 0..<20 {
                let started = Date()
                let response = try probe.perform(
                    "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                    body: wrappedEnvelope(id: "probe-\(second)-\(i)", data: Array("x".utf8)))
                latencies.append(secondsSince(started))
                #expect(response.status == 204)
            }
            usleep(700_000)
        }
        try steady.stop()
        latencies.sort()
        let p50 = latencies[latencies.count / 2], p99 = latencies[latencies.count * 99 / 100]
        print("slow clients: 1000 open, well-behaved p50 \(Int(p50 * 1000)) ms, p99 \(Int(p99 * 1000)) ms, steady acked \(steady.acked.get().count)")
        #expect(steady.failures.get().isEmpty, "\(steady.failures.get().prefix(5))")
        #expect(p99 < 0.5, "a well-behaved sender's p99 latency was \(p99) s")
        // The slow ones time out with 408 (headerTimeout 4 s) and are closed.
        var timedOut = 0
        for client in slow {
            if let response = try? client.readResponse(), response.status == 408 { timedOut += 1 }
        }
        #expect(timedOut == 1000)
    }

    @Test("a pipelining flood on one connection is answered in order without unbounded buffering")
    func pipeliningFlood() throws {
        let server = try PersistorProcess()
        let flood = try server.connect()
        let request = RawHTTPClient.request("GET", "/healthz")
        let count = 20_000
        // The sender thread only writes and this thread only reads, so they share the socket safely.
        nonisolated(unsafe) let writer = flood
        let sender = BackgroundThread {
            let batch = Array([[UInt8]](repeating: request, count: 1000).joined())
            for _ in 0..<(count / 1000) { try? writer.send(batch) }
        }
        // While the flood waits unread, another client is served.
        usleep(300_000)
        #expect(try server.connect().perform("GET", "/healthz").status == 200)
        let rssWhileFlooded = try Self.peakRSS(server.pid)
        var answered = 0
        while answered < count, let response = try? flood.readResponse() {
            guard response.status == 200 else { break }
            answered += 1
        }
        try sender.join()
        print("pipelining flood: \(answered) of \(count) answered, peak RSS \(rssWhileFlooded >> 20) MiB")
        #expect(answered == count)
        #expect(rssWhileFlooded < 128 << 20)
    }

    @Test("peak memory: 256 connections posting 1 KiB, then 16 connections posting 10 MiB bodies")
    func boundedMemory() throws {
        let server = try PersistorProcess()
        let acked = LockedBox(0)
        try runOnThreads(256, timeout: 120) { connection in
            guard let client = try? RawHTTPClient(port: server.port, timeout: 30) else { return }
            let payload = pseudoRandomBytes(count: 1024, seed: UInt64(connection + 1))
            for post in 0..<10 {
                let response = try? client.perform(
                    "POST", "/pubsub", headers: [("Content-Type", "application/json")],
                    body: wrappedEnvelope(id: "small-\(connection)-\(post)", data: payload))
                if response?.status == 204 { acked.update { $0 += 1 } }
            }
        }
        let smallPeak = try Self.peakRSS(server.pid)
        #expect(acked.get() == 256 * 10)

        // Unwrapped deliveries: the body is the message, so memory is about the body and its copies.
        let big = pseudoRandomBytes(count: 10 << 20, seed: 99)
        let bigAcked = LockedBox(0)
        let bigOther = LockedBox([String]())
        try runOnThreads(16, timeout: 600) { connection in
            do {
                let client = try RawHTTPClient(port: server.port, timeout: 300)
                let response = try client.perform(
                    "POST", "/pubsub",
                    headers: [
                        ("Content-Type", "application/octet-stream"), ("x-goog-pubsub-message-id", "big-\(connection)"),
                    ], body: big)
                if response.status == 204 {
                    bigAcked.update { $0 += 1 }
                } else {
                    bigOther.update { $0.append("\(response.status) \(response.bodyText)") }
                }
            } catch {
                bigOther.update { $0.append("\(error)") }
            }
        }
        let bigPeak = try Self.peakRSS(server.pid)
        print(
            "peak RSS: \(smallPeak >> 20) MiB after 256 connections × 10 × 1 KiB; \(bigPeak >> 20) MiB after 16 × 10 MiB (\(bigAcked.get()) acked, others: \(bigOther.get()))"
        )
        #expect(smallPeak < 128 << 20, "documented bound for small deliveries")
        #expect(bigPeak < 1536 << 20, "documented bound for 10 MiB deliveries")
        // 16 × 10 MiB fits the default in-flight budget (256 MiB): every one is stored.
        #expect(bigAcked.get() == 16, "\(bigOther.get())")
    }
}

import Foundation
import PersistorCore

/// How an HTTP/1.1 connection recognises HTTP/2 cleartext: the connection preface sent with prior
/// knowledge (RFC 9113 §3.3), or an `Upgrade: h2c` request (RFC 7540 §3.2).
enum HTTP2Handoff {
    /// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, the first bytes a client with prior knowledge sends.
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    enum PrefaceMatch {
        /// The bytes so far are HTTP/1.
        case mismatch
        /// The bytes so far begin the preface; more are needed to decide.
        case partial
        /// The whole preface is there.
        case complete
    }

    /// Whether `held` (bytes already matched) followed by `chunk` begin with the preface.
    static func matchPreface(held: [UInt8], chunk: UnsafeRawBufferPointer) -> PrefaceMatch {
        var index = held.count
        for byte in chunk {
            guard index < preface.count else { return .complete }
            guard byte == preface[index] else { return .mismatch }
            index += 1
        }
        return index >= preface.count ? .complete : .partial
    }

    /// A request body this size or smaller may ride along an upgrade (it is already read; larger
    /// ones are answered over HTTP/1.1, which RFC 9110 §7.8 allows).
    static let maxUpgradeBodyBytes = 65_535

    /// The decoded `HTTP2-Settings` payload when `head` asks to upgrade to h2c: `Upgrade` lists
    /// `h2c`, `Connection` lists `Upgrade` and `HTTP2-Settings`, and exactly one `HTTP2-Settings`
    /// holds base64url-encoded SETTINGS parameters. Nil for anything else.
    static func upgradeSettings(_ head: HTTPRequestHead) -> [UInt8]? {
        guard head.versionMinor == 1, let upgrade = head.headers["upgrade"],
            tokens(upgrade).contains("h2c")
        else { return nil }
        let connection = head.headers.values(for: "connection").flatMap(tokens)
        guard connection.contains("upgrade"), connection.contains("http2-settings") else { return nil }
        let values = head.headers.values(for: "http2-settings")
        guard values.count == 1, let payload = Base64URL.decode(values[0].utf8), payload.count % 6 == 0 else { return nil }
        return payload
    }

    /// The `101 Switching Protocols` answer that precedes the server's HTTP/2 preface.
    static let switchingProtocols: [UInt8] = Array("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".utf8)

    /// The request as HTTP/2 stream 1 sees it: without the fields that only served the upgrade.
    static func upgradedRequest(_ request: HTTPRequest) -> HTTPRequest {
        var headers = HTTPHeaders()
        for (name, value) in request.head.headers
        where
            !(name.caseInsensitiveEquals("connection") || name.caseInsensitiveEquals("upgrade")
            || name.caseInsensitiveEquals("http2-settings"))
        {
            headers.add(name, value)
        }
        var upgraded = request
        upgraded.head.headers = headers
        return upgraded
    }

    private static func tokens(_ value: String) -> [String] {
        value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    }
}

import Crypto
import Foundation

/// Azure Storage's SharedKey authorization, with the string-to-sign built exactly as the service
/// builds it (learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key):
///
/// - `Content-Length` is empty when it is 0 (versions 2015-02-21 and later);
/// - the `x-ms-*` headers are sorted by the service's culture-aware collation (`headerOrder`),
///   which differs from ASCII order, e.g. `x-ms-meta-a_1` sorts before `x-ms-meta-a1`;
/// - the canonicalized resource is `/account` plus the URL's encoded path, so path-style
///   endpoints (`http://127.0.0.1:10000/devstoreaccount1/…`) name the account twice;
/// - query parameters follow, lower-cased names sorted, values percent-decoded.
package struct AzureSharedKey: Sendable {
    package let account: String
    private let key: SymmetricKey

    /// Nil when `base64Key` is not base64.
    package init?(account: String, base64Key: String) {
        guard let bytes = Data(base64Encoded: base64Key), !bytes.isEmpty else { return nil }
        self.account = account
        key = SymmetricKey(data: bytes)
    }

    /// The standard headers signed by value, in string-to-sign order.
    private static let signedHeaders = [
        "content-encoding", "content-language", "content-length", "content-md5",
        "content-type", "date", "if-modified-since", "if-match", "if-none-match",
        "if-unmodified-since", "range",
    ]

    package func stringToSign(method: String, url: URL, headers: [(name: String, value: String)]) -> String {
        func value(_ name: String) -> String {
            let found = headers.first { $0.name.lowercased() == name }?.value ?? ""
            return name == "content-length" && found == "0" ? "" : found
        }
        var text = method + "\n"
        for name in Self.signedHeaders { text += value(name) + "\n" }
        let storageHeaders = headers.map { (name: $0.name.lowercased(), value: $0.value) }
            .filter { $0.name.hasPrefix("x-ms-") }
            .sorted { Self.headerOrder($0.name, $1.name) < 0 }
        for header in storageHeaders { text += header.name + ":" + header.value + "\n" }
        let components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        text += "/" + account + (components?.percentEncodedPath ?? "")
        var parameters: [String: [String]] = [:]
        for pair in (components?.percentEncodedQuery ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = (String(parts[0]).removingPercentEncoding ?? String(parts[0])).lowercased()
            let raw = parts.count > 1 ? String(parts[1]) : ""
            parameters[name, default: []].append(raw.removingPercentEncoding ?? raw)
        }
        for name in parameters.keys.sorted() {
            text += "\n" + name + ":" + parameters[name]!.sorted().joined(separator: ",")
        }
        return text
    }

    /// `SharedKey account:signature` for the request.
    package func authorization(method: String, url: URL, headers: [(name: String, value: String)]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(stringToSign(method: method, url: url, headers: headers).utf8), using: key)
        return "SharedKey \(account):\(Data(mac).base64EncodedString())"
    }

    // MARK: Header collation

    /// Primary weights of ASCII characters (0 = ignored at this level), from the service's
    /// collation as azure-storage-blob's `_shared/authentication.py` (`table_lv0`) copies it.
    private static let primaryWeights: [UInt16] = [
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x71c, 0x0, 0x71f, 0x721, 0x723, 0x725,
        0x0, 0x0, 0x0, 0x72d, 0x803, 0x0, 0x0, 0x733, 0x0, 0xd03, 0xd1a, 0xd1c, 0xd1e,
        0xd20, 0xd22, 0xd24, 0xd26, 0xd28, 0xd2a, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0xe02, 0xe09, 0xe0a, 0xe1a, 0xe21, 0xe23, 0xe25, 0xe2c, 0xe32, 0xe35, 0xe36, 0xe48, 0xe51,
        0xe70, 0xe7c, 0xe7e, 0xe89, 0xe8a, 0xe91, 0xe99, 0xe9f, 0xea2, 0xea4, 0xea6, 0xea7, 0xea9,
        0x0, 0x0, 0x0, 0x743, 0x744, 0x748, 0xe02, 0xe09, 0xe0a, 0xe1a, 0xe21, 0xe23, 0xe25,
        0xe2c, 0xe32, 0xe35, 0xe36, 0xe48, 0xe51, 0xe70, 0xe7c, 0xe7e, 0xe89, 0xe8a, 0xe91, 0xe99,
        0xe9f, 0xea2, 0xea4, 0xea6, 0xea7, 0xea9, 0x0, 0x74c, 0x0, 0x750, 0x0,
    ]

    /// Tie-breaking weights (`table_lv4`): only `'` and `-` count.
    private static func secondaryWeight(_ byte: UInt8) -> UInt16 {
        switch byte {
        case UInt8(ascii: "'"): 0x8012
        case UInt8(ascii: "-"): 0x8212
        default: 0
        }
    }

    /// Compares two lower-cased ASCII header names as the service does: -1, 0 or 1. A port of
    /// the SDK's `compare`, step for step (including its end-of-string weight 1 and its rule on
    /// the last level that the name whose tie-breaking character comes first sorts first).
    static func headerOrder(_ lhs: String, _ rhs: String) -> Int {
        let left = Array(lhs.utf8), right = Array(rhs.utf8)
        func weight(_ level: Int, _ bytes: [UInt8], _ index: Int) -> UInt16 {
            guard index < bytes.count else { return 1 }
            let byte = bytes[index]
            guard byte < 0x80 else { return 0 }
            return level == 0 ? primaryWeights[Int(byte)] : secondaryWeight(byte)
        }
        var level = 0, i = 0, j = 0
        while level < 2 {
            if level == 1 && i != j { return i > j ? -1 : 1 }
            let w1 = weight(level, left, i), w2 = weight(level, right, j)
            if w1 == 1 && w2 == 1 {
                i = 0
                j = 0
                level += 1
            } else if w1 == w2 {
                i += 1
                j += 1
            } else if w1 == 0 {
                i += 1
            } else if w2 == 0 {
                j += 1
            } else {
                return w1 < w2 ? -1 : 1
            }
        }
        return 0
    }
}

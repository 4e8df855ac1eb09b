import Crypto
import Foundation
import PersistorCore

/// AWS access keys: long-lived (environment) or temporary (IMDS, with a session token).
struct S3Credentials: Sendable, Equatable {
    var accessKeyID: String
    var secretAccessKey: String
    var sessionToken: String?
}

/// The parts of a Signature Version 4 signature, kept so tests can compare each with an oracle.
struct SigV4Signature: Sendable, Equatable {
    var canonicalRequest: String
    var stringToSign: String
    var authorization: String
}

/// Signature Version 4 for S3 (https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html).
enum SigV4 {
    /// Signs a request. `canonicalURI` is the path exactly as sent (for S3: each segment
    /// `uriEncode`d once, never normalised); `headers` are exactly the headers to sign (host, x-amz-date and
    /// x-amz-content-sha256 included), in any case and order; `payloadHash` is the value of
    /// x-amz-content-sha256.
    static func sign(
        method: String, canonicalURI: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)], payloadHash: String,
        credentials: S3Credentials, region: String, amzDate: String
    ) -> SigV4Signature {
        var grouped: [String: [String]] = [:]
        for header in headers {
            grouped[header.name.lowercased(), default: []].append(trimAll(header.value))
        }
        let names = grouped.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(grouped[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let encodedQuery: [(name: String, value: String)] = query.map { (uriEncode($0.name), uriEncode($0.value)) }
        let sortedQuery = encodedQuery.sorted { $0.name != $1.name ? $0.name < $1.name : $0.value < $1.value }
        let canonicalQuery = sortedQuery.map { $0.name + "=" + $0.value }.joined(separator: "&")
        let canonicalRequest = [method, canonicalURI, canonicalQuery, canonicalHeaders, signedHeaders, payloadHash]
            .joined(separator: "\n")
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/s3/aws4_request"
        let stringToSign = "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope)\n\(Hex.encode(SHA256.hash(data: Data(canonicalRequest.utf8))))"
        var key = SymmetricKey(data: Data("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, "s3", "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        let signature = Hex.encode(HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: key))
        return SigV4Signature(
            canonicalRequest: canonicalRequest, stringToSign: stringToSign,
            authorization: "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)")
    }

    /// SigV4's `UriEncode`: every UTF-8 byte except `A-Za-z0-9-_.~` as `%XX` with upper-case hex.
    static func uriEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += percentEscape(byte)
            }
        }
        return out
    }

    /// `x-amz-date` format: `yyyyMMdd'T'HHmmss'Z'` in UTC.
    static func amzDate(_ date: Date) -> String {
        UTCTime(seconds: Int64(date.timeIntervalSince1970.rounded(.down))).amzDate
    }

    /// SigV4's `Trimall`: no leading or trailing whitespace, inner runs of whitespace as one space.
    private static func trimAll(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }
}

/// `%XX` with upper-case hex.
func percentEscape(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF".unicodeScalars)
    return "%" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 0x0F)])
}

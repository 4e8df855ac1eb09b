import Foundation
import PersistorCore
import PersistorStores
import PersistorTestSupport
import Testing

private func base64URLDecode(_ text: Substring) throws -> [UInt8] {
    var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while base64.count % 4 != 0 { base64 += "=" }
    guard let data = Data(base64Encoded: base64) else { throw TestFailure("not base64url: \(text)") }
    return [UInt8](data)
}

private func jsonSegment(_ text: Substring) throws -> NSDictionary {
    guard let object = try JSONSerialization.jsonObject(with: Data(try base64URLDecode(text))) as? NSDictionary else {
        throw TestFailure("segment is not a JSON object")
    }
    return object
}

private func fixtureAccount() throws -> GoogleServiceAccount {
    try GoogleServiceAccount(json: Array(GCSFixtures.keyFile.utf8), keyFile: "fixture.json", store: "gs://bkt")
}

/// Our RS256 assertion against google-auth's (fixtures from Tests/tools/make_gcs_fixtures.py).
@Suite struct GCSServiceAccountTests {
    @Test func headerAndClaimsMeanWhatGoogleAuthsMean() throws {
        let ours = try fixtureAccount().assertion(issuedAt: Date(timeIntervalSince1970: TimeInterval(GCSFixtures.issuedAt)))
        let mine = ours.split(separator: ".", omittingEmptySubsequences: false)
        let theirs = GCSFixtures.googleAuthAssertion.split(separator: ".", omittingEmptySubsequences: false)
        #expect(mine.count == 3)
        #expect(try jsonSegment(mine[0]) == jsonSegment(theirs[0]))
        #expect(try jsonSegment(mine[1]) == jsonSegment(theirs[1]))
        #expect(try jsonSegment(mine[0]) == ["alg": "RS256", "typ": "JWT", "kid": "fixture-kid"] as NSDictionary)
        let claims = try jsonSegment(mine[1])
        #expect(claims["aud"] as? String == "https://oauth2.googleapis.com/token", "not the key file's token_uri")
        #expect(claims["exp"] as? Int == GCSFixtures.issuedAt + 3600)
    }

    @Test func signaturesAreByteEqualToGoogleAuths() throws {
        let account = try fixtureAccount()
        let theirs = GCSFixtures.googleAuthAssertion.split(separator: ".", omittingEmptySubsequences: false)
        let signingInput = Array("\(theirs[0]).\(theirs[1])".utf8)
        #expect(try account.signature(for: signingInput) == base64URLDecode(theirs[2]))
        // Our own assertion carries our signature over our own signing input.
        let ours = try account.assertion(issuedAt: Date(timeIntervalSince1970: TimeInterval(GCSFixtures.issuedAt)))
        let mine = ours.split(separator: ".", omittingEmptySubsequences: false)
        #expect(try account.signature(for: Array("\(mine[0]).\(mine[1])".utf8)) == base64URLDecode(mine[2]))
        #expect(!mine[2].contains("="), "unpadded base64url")
    }
}

/// A bad key file stops start-up with an error naming the file and the cause, never the key.
@Suite struct GCSKeyFileTests {
    private func openError(keyFile: String) -> BlobStoreError? {
        do {
            _ = try StoreFactory.open("gs://bkt/p", environment: ["GOOGLE_APPLICATION_CREDENTIALS": keyFile], transport: URLSessionTransport())
            return nil
        } catch {
            return error
        }
    }

    /// The fixture key file with `field` set to `value` (removed when nil).
    private func keyFile(_ field: String, _ value: String?) throws -> (TemporaryDirectory, String) {
        var info = try #require(try JSONSerialization.jsonObject(with: Data(GCSFixtures.keyFile.utf8)) as? [String: Any])
        info[field] = value
        let directory = try TemporaryDirectory("gcs-key")
        let path = directory.path + "/sa.json"
        try JSONSerialization.data(withJSONObject: info).write(to: URL(fileURLWithPath: path))
        return (directory, path)
    }

    @Test func aMissingFile() throws {
        let error = try #require(openError(keyFile: "/nonexistent/sa.json"))
        #expect(error.message == "GOOGLE_APPLICATION_CREDENTIALS file /nonexistent/sa.json does not exist")
        #expect(!error.retryable)
    }

    @Test func aDirectoryIsUnreadable() throws {
        let directory = try TemporaryDirectory("gcs-key")
        defer { directory.remove() }
        #expect(openError(keyFile: directory.path)?.message == "GOOGLE_APPLICATION_CREDENTIALS file \(directory.path) cannot be read")
    }

    @Test(
        arguments: [
            ("type", "authorized_user", "type is 'authorized_user', expected 'service_account'"),
            ("type", nil, "type is missing, expected 'service_account'"),
            ("client_email", nil, "client_email is missing"),
            ("private_key", nil, "private_key is missing"),
            ("token_uri", nil, "token_uri is missing"),
            ("token_uri", "file:///etc/passwd", "token_uri is not an http(s) URL"),
            (
                "private_key", "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAzzzz\n-----END PRIVATE KEY-----\n",
                "private_key is not a PEM RSA private key of at least 2048 bits"
            ),
        ] as [(String, String?, String)])
    func aWrongOrIncompleteKeyFile(field: String, value: String?, cause: String) throws {
        let (directory, path) = try keyFile(field, value)
        defer { directory.remove() }
        let error = try #require(openError(keyFile: path))
        #expect(error.message == "GOOGLE_APPLICATION_CREDENTIALS file \(path): \(cause)")
        #expect(error.store == "gs://bkt/p")
        #expect(!error.description.contains("MII"), "no key material")
    }

    @Test func notJSON() throws {
        let directory = try TemporaryDirectory("gcs-key")
        defer { directory.remove() }
        let path = directory.path + "/sa.json"
        try Data("-----BEGIN PRIVATE KEY-----\nMIIEvQ\n".utf8).write(to: URL(fileURLWithPath: path))
        let error = try #require(openError(keyFile: path))
        #expect(error.message == "GOOGLE_APPLICATION_CREDENTIALS file \(path): not a JSON object with string fields")
        #expect(!error.description.contains("MII"))
    }
}

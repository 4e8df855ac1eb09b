import Foundation
import PersistorCore
import PersistorTestSupport
import PersistorTesting
import Testing

@testable import PersistorStores

private let devKey = AzureConnectionString.developmentKey

@Suite struct AzureConnectionStringTests {
    @Test func readsEveryKeyCaseInsensitively() throws {
        let parsed = try AzureConnectionString(
            "defaultendpointsprotocol=http; AccountName=acct1;ACCOUNTKEY=\(devKey);EndpointSuffix=core.chinacloudapi.cn;"
                + "QueueEndpoint=https://q.example;;")
        #expect(parsed.accountName == "acct1")
        #expect(parsed.accountKey == devKey, "the '=' padding inside the value is kept")
        #expect(parsed.defaultEndpointsProtocol == "http")
        #expect(parsed.endpointSuffix == "core.chinacloudapi.cn")
        #expect(parsed.blobEndpoint == nil && parsed.sharedAccessSignature == nil && !parsed.useDevelopmentStorage)
        #expect(parsed.endpoint(account: "acct1") == "http://acct1.blob.core.chinacloudapi.cn")
    }

    @Test func blobEndpointAndSAS() throws {
        let parsed = try AzureConnectionString(
            "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;SharedAccessSignature=?sv=2025-11-05&sig=a%2Bb%3D")
        #expect(parsed.blobEndpoint == "http://127.0.0.1:10000/devstoreaccount1")
        #expect(parsed.sharedAccessSignature == "sv=2025-11-05&sig=a%2Bb%3D")
        #expect(parsed.endpoint(account: "devstoreaccount1") == "http://127.0.0.1:10000/devstoreaccount1")
        #expect(try AzureConnectionString("AccountName=a12").endpoint(account: "a12") == "https://a12.blob.core.windows.net")
    }

    @Test func developmentStorage() throws {
        let parsed = try AzureConnectionString("UseDevelopmentStorage=true")
        #expect(parsed.useDevelopmentStorage)
        #expect(parsed.accountName == "devstoreaccount1")
        #expect(parsed.accountKey == devKey)
        #expect(parsed.blobEndpoint == "http://127.0.0.1:10000/devstoreaccount1")
        #expect(try AzureConnectionString("UseDevelopmentStorage=false;AccountName=abc").useDevelopmentStorage == false)
    }

    @Test(arguments: [
        ("AccountName", "a segment is not Key=Value"),
        ("AccountName=a;accountname=b", "accountname appears twice"),
        ("AccountName=", "AccountName is empty"),
        ("AccountName=abc;AccountKey=not base64!", "AccountKey is not base64"),
        ("AccountKey=\(devKey)", "AccountKey needs AccountName"),
        ("AccountName=abc;AccountKey=\(devKey);SharedAccessSignature=sig=x", "give either AccountKey or SharedAccessSignature, not both"),
        ("BlobEndpoint=ftp://host/x", "BlobEndpoint must be an http(s) URL without a query"),
        ("BlobEndpoint=https://host/x?a=b", "BlobEndpoint must be an http(s) URL without a query"),
        ("DefaultEndpointsProtocol=gopher", "DefaultEndpointsProtocol must be http or https"),
        ("UseDevelopmentStorage=yes", "UseDevelopmentStorage must be true or false"),
        ("UseDevelopmentStorage=true;AccountName=abc", "UseDevelopmentStorage=true takes no other keys"),
        ("AccountName=abc;AcountKey=\(devKey)", "unknown key AcountKey"),
    ])
    func rejectsMalformedStringsWithoutQuotingValues(text: String, message: String) {
        #expect(throws: AzureConfigurationError(message)) { try AzureConnectionString(text) }
    }
}

@Suite struct AzureStoreLocationTests {
    @Test func parsesAccountContainerAndPrefix() throws {
        let location = try AzureStoreLocation("az://acct1/archive-01/raw/pubsub/")
        #expect(location.account == "acct1" && location.container == "archive-01" && location.prefix == "raw/pubsub")
        #expect(location.name == "az://acct1/archive-01/raw/pubsub")
        let bare = try AzureStoreLocation("az://acct1/c01")
        #expect(bare.prefix == "" && bare.name == "az://acct1/c01")
        #expect(bare.singlePutLimit == 8 << 20 && bare.blockSize == 4 << 20)
    }

    @Test func uploadSizesFromTheQuery() throws {
        let location = try AzureStoreLocation("az://acct1/c01/p?singlePutLimit=1024&blockSize=300")
        #expect(location.singlePutLimit == 1024 && location.blockSize == 300 && location.prefix == "p")
        #expect(location.name == "az://acct1/c01/p")
    }

    @Test(arguments: [
        ("gs://acct/c01", "an Azure store URL starts with az://"),
        ("az://acct1", "expected az://account/container[/prefix]"),
        ("az://Acct1/c01", "the account name must be 3 to 24 lower-case letters and digits"),
        ("az://ac/c01", "the account name must be 3 to 24 lower-case letters and digits"),
        ("az://acct1/c", "the container name must be 3 to 63 lower-case letters, digits and single inner hyphens"),
        ("az://acct1/c--1", "the container name must be 3 to 63 lower-case letters, digits and single inner hyphens"),
        ("az://acct1/-c1", "the container name must be 3 to 63 lower-case letters, digits and single inner hyphens"),
        ("az://acct1/C01", "the container name must be 3 to 63 lower-case letters, digits and single inner hyphens"),
        ("az://acct1/c01/a//b", "the prefix has an empty path segment"),
        ("az://acct1/c01//a", "the prefix has an empty path segment"),
        ("az://acct1/c01?blockSize=0", "blockSize must be a byte count from 1 to 4000 MiB"),
        ("az://acct1/c01?singlePutLimit=4MiB", "singlePutLimit must be a byte count from 1 to 5000 MiB"),
        ("az://acct1/c01?timeout=3", "unknown query parameter 'timeout' (known: singlePutLimit, blockSize)"),
    ])
    func rejectsBadURLs(url: String, message: String) {
        #expect(throws: AzureConfigurationError(message)) { try AzureStoreLocation(url) }
    }

    @Test func theFactoryOpensAzureURLsAndNamesTheStoreInErrors() throws {
        let environment = ["AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"]
        let store = try StoreFactory.open("az://devstoreaccount1/c01/p?blockSize=10", environment: environment)
        #expect(store.name == "az://devstoreaccount1/c01/p")
        do {
            _ = try StoreFactory.open("az://otheraccount/c01/p?blockSize=10", environment: environment)
            Issue.record("expected an account mismatch")
        } catch {
            #expect(error.store == "az://otheraccount/c01/p")
            #expect(!error.retryable)
            #expect(error.message == "the connection string's AccountName 'devstoreaccount1' is not the store URL's account 'otheraccount'")
        }
    }
}

@Suite struct AzureAccessTests {
    let client = StoreHTTPClient(store: "az://acct1/c01", transport: URLSessionTransport())

    func resolve(_ environment: [String: String], account: String = "acct1") throws(AzureConfigurationError) -> AzureAccess {
        try AzureAccess.resolve(account: account, environment: environment, client: client)
    }

    @Test func theConnectionStringComesFirst() throws {
        let access = try resolve([
            "AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct1;AccountKey=\(devKey);EndpointSuffix=core.usgovcloudapi.net",
            "AZURE_STORAGE_KEY": devKey, "AZURE_STORAGE_SAS_TOKEN": "sig=x",
        ])
        #expect(access.endpoint == "https://acct1.blob.core.usgovcloudapi.net")
        guard case .sharedKey(let key) = access.authorization else { Issue.record("expected SharedKey"); return }
        #expect(key.account == "acct1")
    }

    @Test func aConnectionStringWithoutCredentialOnlySetsTheEndpoint() throws {
        let access = try resolve([
            "AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=http://127.0.0.1:1/acct1",
            "AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x",
        ])
        #expect(access.endpoint == "http://127.0.0.1:1/acct1")
        guard case .sas(let token) = access.authorization else { Issue.record("expected SAS"); return }
        #expect(token == "sv=1&sig=x")
    }

    @Test func thenTheKeyThenTheSASThenManagedIdentity() throws {
        let keyed = try resolve(["AZURE_STORAGE_KEY": devKey, "AZURE_STORAGE_SAS_TOKEN": "sig=x", "AZURE_STORAGE_ACCOUNT": "acct1"])
        #expect(keyed.endpoint == "https://acct1.blob.core.windows.net")
        guard case .sharedKey = keyed.authorization else { Issue.record("expected SharedKey"); return }
        guard case .sas = try resolve(["AZURE_STORAGE_SAS_TOKEN": "sig=x"]).authorization else { Issue.record("expected SAS"); return }
        guard case .bearer = try resolve([:]).authorization else { Issue.record("expected a bearer token"); return }
    }

    @Test func managedIdentityEndpoints() throws {
        let imds = try AzureManagedIdentity(environment: ["AZURE_CLIENT_ID": "1234-ab"], client: client)
        #expect(
            imds.tokenURL.absoluteString
                == "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F&client_id=1234-ab"
        )
        #expect(imds.headers.map(\.name) == ["Metadata"] && imds.headers.map(\.value) == ["true"])
        let pod = try AzureManagedIdentity(environment: ["AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:8089/"], client: client)
        #expect(
            pod.tokenURL.absoluteString
                == "http://127.0.0.1:8089/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com%2F")
        let appService = try AzureManagedIdentity(
            environment: [
                "IDENTITY_ENDPOINT": "http://127.0.0.1:41741/msi/token",
                "IDENTITY_HEADER": "secret-header",
            ], client: client)
        #expect(
            appService.tokenURL.absoluteString
                == "http://127.0.0.1:41741/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fstorage.azure.com%2F")
        #expect(appService.headers.map(\.name) == ["X-IDENTITY-HEADER"] && appService.headers.map(\.value) == ["secret-header"])
    }

    @Test(arguments: [
        (
            ["AZURE_STORAGE_CONNECTION_STRING": "AccountName=other1;AccountKey=\(devKey)"],
            "the connection string's AccountName 'other1' is not the store URL's account 'acct1'"
        ),
        (
            ["AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct1;AccountKey=abc!"],
            "AZURE_STORAGE_CONNECTION_STRING: AccountKey is not base64"
        ),
        (
            ["AZURE_STORAGE_KEY": devKey, "AZURE_STORAGE_ACCOUNT": "other1"],
            "AZURE_STORAGE_ACCOUNT 'other1' is not the store URL's account 'acct1'"
        ),
        (["AZURE_STORAGE_KEY": "%%%"], "AZURE_STORAGE_KEY is not base64"),
        (
            ["AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=http://blob.example.com/acct1"],
            "managed identity tokens are sent only over https, and the blob endpoint is http://blob.example.com/acct1 (plain http is allowed for loopback endpoints only)"
        ),
    ])
    func rejectsMismatchesAndUnsafeSetups(environment: [String: String], message: String) {
        #expect(throws: AzureConfigurationError(message)) { try resolve(environment) }
    }
}

@Suite struct AzureBlobStoreUnitTests {
    @Test func splitsLargeBodiesIntoEqualBlocksWithEqualLengthIDs() throws {
        let blocks = AzureBlobStore.blocks(count: 1000, size: 300)
        #expect(blocks.map(\.range) == [0..<300, 300..<600, 600..<900, 900..<1000])
        #expect(Set(blocks.map(\.id.count)).count == 1)
        let decoded = try blocks.map { try #require(Data(base64Encoded: $0.id)).map { $0 } }
        let texts = decoded.map { String(decoding: $0, as: UTF8.self) }
        #expect(texts.allSatisfy { $0.count == 23 && $0.dropFirst(17) == $0.suffix(6) })
        #expect(texts.map { $0.suffix(6) } == ["000000", "000001", "000002", "000003"])
        #expect(Set(texts.map { $0.prefix(16) }).count == 1, "one upload id per blob")
        #expect(AzureBlobStore.blocks(count: 600, size: 300).map(\.range) == [0..<300, 300..<600])
        #expect(AzureBlobStore.blocks(count: 1000, size: 300)[0].id != blocks[0].id, "each upload has its own ids")
    }

    @Test func metadataNamesMustBeCSharpIdentifiers() {
        for name in ["id", "firstReceivedAt", "_x", "a_1", "Z9"] { #expect(AzureBlobStore.isMetadataName(name), "\(name)") }
        for name in ["", "1a", "a-b", "a.b", "é", "a b"] { #expect(!AzureBlobStore.isMetadataName(name), "\(name)") }
    }

    @Test func metadataValuesArePercentEncodedWhereHeadersCannotCarryThem() {
        #expect(AzureBlobStore.encodedMetadataValue("plain value: 1/2") == "plain value: 1/2")
        #expect(AzureBlobStore.encodedMetadataValue("é 100%") == "%C3%A9 100%25")
        #expect(AzureBlobStore.encodedMetadataValue(" edge ") == "%20edge%20")
        #expect(AzureBlobStore.encodedMetadataValue("a\r\nb\u{7F}") == "a%0D%0Ab%7F")
        #expect(AzureBlobStore.encodedMetadataValue("€").removingPercentEncoding == "€")
    }

    @Test func refusesBlobsWithMetadataAzureCannotStore() async throws {
        let environment = ["AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"]
        let store = try StoreFactory.open("az://devstoreaccount1/c01", environment: environment)
        for metadata in [["bad-name": "v"], ["Id": "1", "id": "2"]] {
            do {
                _ = try await store.put(Blob(key: "k", bytes: [1], contentType: "x", metadata: metadata))
                Issue.record("expected a refusal for \(metadata)")
            } catch {
                #expect(!error.retryable)
                #expect(error.status == nil, "refused before anything is sent")
                #expect(error.message.contains("is not allowed"))
            }
        }
    }

    @Test func blobNamesJoinPrefixAndKeyWithOneSlash() throws {
        let environment = ["AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"]
        let prefixed = try AzureBlobStore(url: "az://devstoreaccount1/c01/a/b", environment: environment, transport: URLSessionTransport())
        #expect(prefixed.blobName("x/y.gz") == "a/b/x/y.gz")
        #expect(prefixed.blobName("/x") == "a/b/x")
        let bare = try AzureBlobStore(url: "az://devstoreaccount1/c01", environment: environment, transport: URLSessionTransport())
        #expect(bare.blobName("x/y.gz") == "x/y.gz")
        #expect(AzureBlobStore.encodedPath("a b/./../c%/é") == "a%20b/%2E/%2E%2E/c%25/%C3%A9")
    }

    @Test func httpDates() {
        #expect(AzureBlobStore.httpDate(Date(timeIntervalSince1970: 1_795_694_400)) == "Thu, 26 Nov 2026 12:00:00 GMT")
        #expect(AzureBlobStore.httpDate(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(AzureBlobStore.httpDate(Date(timeIntervalSince1970: 951_782_400 + 3_661)) == "Tue, 29 Feb 2000 01:01:01 GMT")
    }
}

/// Token endpoint answers the fake identity endpoint never gives (numbers, errors, IMDS's 404):
/// one answer per request, in order.
private func tokenAnswers(_ answers: [(Int, String)]) -> ScriptedTransport {
    ScriptedTransport(answers: answers.map { StoreHTTPResponse(status: $0.0, body: Array($0.1.utf8)) })
}

@Suite struct AzureManagedIdentityTokenTests {
    private let fast = StoreRetryPolicy(
        attemptTimeout: .seconds(10), totalTimeout: .seconds(30), maxAttempts: 3,
        initialBackoff: .milliseconds(1), maxBackoff: .milliseconds(2))

    private func identity(_ environment: [String: String], _ transport: ScriptedTransport) throws -> AzureManagedIdentity {
        try AzureManagedIdentity(
            environment: environment,
            client: StoreHTTPClient(store: "az://acct1/c01", transport: transport, policy: fast))
    }

    @Test func readsExpiriesGivenAsStringsOrNumbers() async throws {
        let appService = try identity(
            ["IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi", "IDENTITY_HEADER": "h"],
            tokenAnswers([(200, #"{"access_token":"t1","expires_on":"1795694400","token_type":"Bearer"}"#)]))
        let first = try await appService.fetch()
        #expect(first.value == "t1" && first.expiresAt == Date(timeIntervalSince1970: 1_795_694_400))
        let imds = try identity([:], tokenAnswers([(200, #"{"access_token":"t2","expires_in":3600}"#)]))
        let second = try await imds.fetch()
        #expect(second.value == "t2" && abs(second.expiresAt.timeIntervalSinceNow - 3600) < 60)
    }

    @Test func imdsRetries404And410() async throws {
        let transport = tokenAnswers([(404, "{}"), (410, "{}"), (200, #"{"access_token":"t","expires_in":"60"}"#)])
        #expect(try await identity([:], transport).fetch().value == "t")
        #expect(transport.requests.count == 3)
    }

    @Test func refusalsNameTheEndpointAndTheOAuthErrorButNoToken() async throws {
        let transport = tokenAnswers([(400, #"{"error":"invalid_request","error_description":"Identity not found"}"#)])
        let source = try identity(["AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"], transport)
        do {
            _ = try await source.fetch()
            Issue.record("expected a failure")
        } catch {
            #expect(error.status == 400 && error.code == "invalid_request" && !error.retryable)
            #expect(error.message.hasPrefix("managed identity token (used because neither AZURE_STORAGE_CONNECTION_STRING"))
            #expect(error.message.hasSuffix("from IMDS at http://127.0.0.1:9: HTTP 400"))
        }
        let incomplete = tokenAnswers([(200, #"{"access_token":"t"}"#)])
        await #expect(throws: BlobStoreError.self) { _ = try await identity([:], incomplete).fetch() }
    }
}

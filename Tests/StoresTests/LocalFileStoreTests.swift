import Foundation
import PersistorCore
import PersistorTestSupport
import Testing

@testable import PersistorStores

@Suite struct LocalFileStoreTests {
    @Test func putWritesBytesAndCreatesDirectories() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        let outcome = try await store.put(Blob(key: "a/b/c/x.ndjson.gz", bytes: [1, 2, 3], contentType: "application/x-ndjson"))
        #expect(outcome == .created)
        #expect(FileManager.default.contents(atPath: dir.path + "/a/b/c/x.ndjson.gz") == Data([1, 2, 3]))
        #expect(dir.files() == ["a/b/c/x.ndjson.gz"], "no temporary files remain")
    }

    @Test func createOnlyKeepsTheFirstObject() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        #expect(try await store.put(Blob(key: "k/id.gz", bytes: [1], contentType: "x", createOnly: true)) == .created)
        #expect(try await store.put(Blob(key: "k/id.gz", bytes: [2], contentType: "x", createOnly: true)) == .alreadyExists)
        #expect(FileManager.default.contents(atPath: dir.path + "/k/id.gz") == Data([1]))
        #expect(dir.files() == ["k/id.gz"])
    }

    @Test(arguments: ["../x", "/abs", "a//b", "a/./b", "a/../b", "", "a\u{0}b", "a/"])
    func unsafeKeysAreRefused(key: String) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path + "/root")
        await #expect(throws: BlobStoreError.self) { try await store.put(Blob(key: key, bytes: [1], contentType: "x")) }
        #expect(dir.files().isEmpty)
    }

    @Test func leftoverTemporaryFilesAreRemovedAtOpen() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        try FileManager.default.createDirectory(atPath: dir.path + "/a", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir.path + "/a/.x.ndjson.gz.tmp-1f", contents: Data([1]))
        _ = FileManager.default.createFile(atPath: dir.path + "/a/x.ndjson.gz", contents: Data([2]))
        _ = try LocalFileStore(root: dir.path)
        #expect(dir.files() == ["a/x.ndjson.gz"])
    }

    @Test func unwritableRootFailsRetryably() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path + "/root")
        // A regular file where a directory is needed makes every write fail, even as root.
        _ = FileManager.default.createFile(atPath: dir.path + "/root/blocked", contents: Data())
        do {
            _ = try await store.put(Blob(key: "blocked/x", bytes: [1], contentType: "x"))
            Issue.record("put should fail")
        } catch {
            #expect(error.retryable)
            #expect(error.key == "blocked/x")
        }
    }

    @Test func aDirectoryRemovedWhileServingIsCreatedAgain() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        func put(_ key: String) async throws {
            _ = try await store.put(Blob(key: key, bytes: [1], contentType: "x"))
        }
        try await put("route/2026/12/03/13/a")
        // The current hour's directory goes (a clean-up job, an operator).
        try FileManager.default.removeItem(atPath: dir.path + "/route/2026/12/03/13")
        try await put("route/2026/12/03/13/b")
        // A whole tree goes: a new directory below a cached, removed one works too.
        try FileManager.default.removeItem(atPath: dir.path + "/route")
        try await put("route/2026/12/03/14/c")
        try await put("route/2026/12/03/13/d")
        #expect(dir.files() == ["route/2026/12/03/13/d", "route/2026/12/03/14/c"])
    }

    @Test func probeFailsBelowTheMinimumFreeSpace() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = try LocalFileStore(root: dir.path)
        #expect(store.minimumFreeBytes == LocalFileStore.defaultMinimumFreeBytes)
        try await store.probe()
        store.minimumFreeBytes = Int.max
        do {
            try await store.probe()
            Issue.record("the probe should fail")
        } catch {
            #expect(error.message.contains("free on the file system, below the"), "\(error)")
            #expect(error.code == String(cString: strerror(ENOSPC)))
        }
        store.minimumFreeBytes = 0
        try await store.probe()
        #expect(dir.files().isEmpty, "the probe leaves nothing behind")
    }

    @Test func aRootThatIsAFileIsRefusedAtOpen() throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let file = dir.path + "/store"
        _ = FileManager.default.createFile(atPath: file, contents: Data([1]))
        for root in [file, file + "/below"] {
            do {
                _ = try LocalFileStore(root: root)
                Issue.record("\(root) should be refused")
            } catch {
                #expect(error.description.contains(root), "\(error)")
                #expect(error.code == String(cString: strerror(ENOTDIR)), "\(error)")
            }
        }
    }

    @Test func anUnwritableRootIsRefusedAtOpen() throws {
        // Tests run as root, which permissions do not stop; an immutable directory does.
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let root = dir.path + "/store"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        let chattr = try requireTool("chattr", install: "apt-get install -y e2fsprogs")
        let flagged = try runProcess(chattr, ["+i", root])
        try #require(
            flagged.status == 0,
            "chattr +i \(root) failed (\(flagged.stderr)): the test needs a temp directory on a file system with the immutable flag (ext4, xfs, btrfs)"
        )
        defer { _ = try? runProcess(chattr, ["-i", root]) }
        do {
            _ = try LocalFileStore(root: root)
            Issue.record("an immutable root should be refused")
        } catch {
            #expect(error.description.contains(root) && error.description.contains("cannot create a file"), "\(error)")
        }
    }
}

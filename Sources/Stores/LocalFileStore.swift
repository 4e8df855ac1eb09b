import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes objects as files below a root directory. Every put writes a temporary file next to the
/// target, fsyncs it, renames (or, create-only, links) it into place and fsyncs the directory, so
/// an object is either absent or complete, and durable once `put` returns.
public final class LocalFileStore: BlobWriter {
    public let root: String
    public var name: String { "file://" + root }
    private let queue = DispatchQueue(label: "persistor.localstore", attributes: .concurrent)
    /// Directories known to exist (and to be durable), so hot paths skip `mkdir`.
    private let knownDirectories = KnownDirectories()

    /// Opens (and creates) the root directory, and removes temporary files a crash left behind.
    public init(root: String) throws(BlobStoreError) {
        let absolute = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
        self.root = URL(fileURLWithPath: absolute).standardizedFileURL.path
        try ensureDirectory(self.root, key: nil)
        removeLeftoverTemporaryFiles()
    }

    public func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<PutOutcome, BlobStoreError>, Never>) in
            queue.async {
                continuation.resume(returning: Result { () throws(BlobStoreError) in try self.write(blob) })
            }
        }
        return try result.get()
    }

    /// Writes, fsyncs and removes a small file in the root, so a full or read-only disk shows.
    public func probe() async throws(BlobStoreError) {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<BlobStoreError?, Never>) in
            queue.async {
                let path = self.root + "/.probe.tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
                let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
                guard fd >= 0 else { return continuation.resume(returning: self.failure(nil, "probe: cannot create a file in the root directory")) }
                defer { close(fd); unlink(path) }
                let ok = Glibc.write(fd, "probe", 5) == 5 && fsync(fd) == 0
                continuation.resume(returning: ok ? nil : self.failure(nil, "probe: write or fsync failed"))
            }
        }
        if let result { throw result }
    }

    /// Temporary files are named `.<name>.tmp-<random>` so archive globs never match them.
    static func isTemporaryFileName(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(".tmp-")
    }

    private func write(_ blob: Blob) throws(BlobStoreError) -> PutOutcome {
        let key = blob.key
        guard Self.isSafeKey(key) else { throw BlobStoreError(store: name, key: key, message: "unsafe object key", retryable: false) }
        let path = root + "/" + key
        let slash = path.lastIndex(of: "/")!
        let directory = String(path[..<slash])
        let fileName = String(path[path.index(after: slash)...])
        try ensureDirectory(directory, key: key)
        let temporary = directory + "/." + fileName + ".tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(key, "cannot create temporary file") }
        var closed = false
        defer { if !closed { close(fd); unlink(temporary) } }
        let written = blob.bytes.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        guard written else { throw failure(key, "write failed") }
        guard fsync(fd) == 0 else { throw failure(key, "fsync failed") }
        closed = true
        guard close(fd) == 0 else { unlink(temporary); throw failure(key, "close failed") }

        var outcome = PutOutcome.created
        if blob.createOnly {
            if link(temporary, path) != 0 {
                let code = errno
                unlink(temporary)
                guard code == EEXIST else { errno = code; throw failure(key, "link failed") }
                outcome = .alreadyExists
            } else {
                unlink(temporary)
            }
        } else if rename(temporary, path) != 0 {
            let code = errno
            unlink(temporary)
            errno = code
            throw failure(key, "rename failed")
        }
        try fsyncDirectory(directory, key: key)
        return outcome
    }

    /// Keys are relative paths of plain segments: no leading `/`, no empty, `.` or `..` segment, no NUL.
    static func isSafeKey(_ key: String) -> Bool {
        guard !key.isEmpty, !key.utf8.contains(0) else { return false }
        for segment in key.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty || segment == "." || segment == ".." { return false }
        }
        return true
    }

    /// `mkdir -p`, fsyncing each parent whose entry list changed so new directories are durable.
    private func ensureDirectory(_ path: String, key: String?) throws(BlobStoreError) {
        if knownDirectories.contains(path) { return }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            knownDirectories.insert(path)
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if parent != path && !parent.isEmpty { try ensureDirectory(parent, key: key) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw failure(key, "cannot create directory") }
        if parent != path && !parent.isEmpty { try fsyncDirectory(parent, key: key) }
        knownDirectories.insert(path)
    }

    private func fsyncDirectory(_ path: String, key: String?) throws(BlobStoreError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw failure(key, "cannot open directory") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw failure(key, "directory fsync failed") }
    }

    private func removeLeftoverTemporaryFiles() {
        guard let walker = FileManager.default.enumerator(atPath: root) else { return }
        while let relative = walker.nextObject() as? String {
            let fileName = (relative as NSString).lastPathComponent
            if Self.isTemporaryFileName(fileName) { unlink(root + "/" + relative) }
        }
    }

    private func failure(_ key: String?, _ what: String) -> BlobStoreError {
        BlobStoreError(store: name, key: key, code: String(cString: strerror(errno)),
                       message: what, retryable: true)
    }
}

/// A lock-protected set of paths.
private final class KnownDirectories: @unchecked Sendable {
    private var paths = Set<String>()
    private let lock = NSLock()
    func contains(_ path: String) -> Bool { lock.withLock { paths.contains(path) } }
    func insert(_ path: String) { _ = lock.withLock { paths.insert(path) } }
}

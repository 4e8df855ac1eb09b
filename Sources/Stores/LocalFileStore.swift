import Foundation
import PersistorCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Writes objects as files below a root directory. Every put writes a temporary file next to the
/// target, fsyncs it, renames (or, create-only, links) it into place and fsyncs the directory, so
/// an object is either absent or complete, and durable once `put` returns.
package final class LocalFileStore: BlobWriter {
    package let root: String
    package var name: String { "file://" + root }
    private let queue = DispatchQueue(label: "persistor.localstore", attributes: .concurrent)
    /// Directories known to exist (and to be durable), so hot paths skip `mkdir`.
    private let knownDirectories = KnownDirectories()
    private let minimumFree = Atomic<Int>(LocalFileStore.defaultMinimumFreeBytes)

    /// The default of `minimumFreeBytes`: the default `archive.batch.maxBytes`.
    package static let defaultMinimumFreeBytes = 8 << 20

    /// Free space on the root's file system below which `probe` fails, so readiness does not
    /// report a store whose batch writes fail for lack of space (docs/stores.md#local-filesystem).
    /// Set it to the largest amount the writes in flight at once may need.
    package var minimumFreeBytes: Int {
        get { minimumFree.load(ordering: .relaxed) }
        set { minimumFree.store(newValue, ordering: .relaxed) }
    }

    /// Opens (and creates) the root directory, checks that a file can be written in it, and
    /// removes temporary files a crash left behind. A root that is not a directory, or one that
    /// does not take files, is an error here rather than a store that fails every write later.
    package init(root: String) throws(BlobStoreError) {
        let absolute = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
        self.root = URL(fileURLWithPath: absolute).standardizedFileURL.path
        do throws(SystemError) {
            try ensureDirectory(self.root)
            try writeProbeFile()
        } catch {
            throw BlobStoreError(
                store: name, key: nil, code: String(cString: strerror(error.code)),
                message: "store directory \(self.root): \(error.what)", retryable: false)
        }
        removeLeftoverTemporaryFiles()
    }

    package func put(_ blob: Blob) async throws(BlobStoreError) -> PutOutcome {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<PutOutcome, BlobStoreError>, Never>) in
            queue.async {
                continuation.resume(returning: Result { () throws(BlobStoreError) in try self.write(blob) })
            }
        }
        return try result.get()
    }

    /// Checks the free space (`minimumFreeBytes`), then writes, fsyncs and removes a small file in
    /// the root, so a full or read-only disk shows.
    package func probe() async throws(BlobStoreError) {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<BlobStoreError?, Never>) in
            queue.async {
                do throws(SystemError) {
                    try self.checkFreeSpace()
                    try self.writeProbeFile()
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: self.failure(nil, SystemError("probe: " + error.what, error.code)))
                }
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
        var retried = false
        while true {
            do throws(SystemError) {
                return try write(blob, directory: directory, fileName: fileName, path: path)
            } catch {
                // A directory the cache holds was removed while serving (by hand, or a clean-up
                // job): forget it and create it again, once, instead of failing until restart.
                guard error.code == ENOENT, !retried else { throw failure(key, error) }
                retried = true
                forgetRemovedDirectories(from: directory)
            }
        }
    }

    private func write(_ blob: Blob, directory: String, fileName: String, path: String) throws(SystemError) -> PutOutcome {
        try ensureDirectory(directory)
        let temporary = directory + "/." + fileName + ".tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)

        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("cannot create temporary file") }
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
        guard written else { throw SystemError("write failed") }
        guard fsync(fd) == 0 else { throw SystemError("fsync failed") }
        closed = true
        guard close(fd) == 0 else {
            let error = SystemError("close failed")
            unlink(temporary)
            throw error
        }

        var outcome = PutOutcome.created
        if blob.createOnly {
            if link(temporary, path) != 0 {
                let error = SystemError("link failed")
                unlink(temporary)
                guard error.code == EEXIST else { throw error }
                outcome = .alreadyExists
            } else {
                unlink(temporary)
            }
        } else if rename(temporary, path) != 0 {
            let error = SystemError("rename failed")
            unlink(temporary)
            throw error
        }
        try fsyncDirectory(directory)
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
    private func ensureDirectory(_ path: String) throws(SystemError) {
        if knownDirectories.contains(path) { return }
        if Self.isDirectory(path) {
            knownDirectories.insert(path)
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if parent != path && !parent.isEmpty { try ensureDirectory(parent) }
        if mkdir(path, 0o755) != 0 {
            let error = SystemError("cannot create directory \(path)")
            guard error.code == EEXIST else { throw error }
            // Something other than a directory is in the way (mkdir(2) says EEXIST for any file).
            guard Self.isDirectory(path) else { throw SystemError("\(path) exists and is not a directory", ENOTDIR) }
        }
        if parent != path && !parent.isEmpty { try fsyncDirectory(parent) }
        knownDirectories.insert(path)
    }

    /// After ENOENT below `directory`: the topmost directory missing on the way up from it, and
    /// everything cached below that, are forgotten, so `ensureDirectory` creates them again.
    private func forgetRemovedDirectories(from directory: String) {
        var missing = directory
        while true {
            let parent = (missing as NSString).deletingLastPathComponent
            guard parent != missing, !parent.isEmpty, !Self.isDirectory(parent) else { break }
            missing = parent
        }
        knownDirectories.remove(subtree: missing)
    }

    private static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR
    }

    private func fsyncDirectory(_ path: String) throws(SystemError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("cannot open directory \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SystemError("directory fsync failed") }
    }

    /// Creates, writes, fsyncs and removes a small file in the root.
    private func writeProbeFile() throws(SystemError) {
        let path = root + "/.probe.tmp-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("cannot create a file in the directory") }
        defer { close(fd); unlink(path) }
        guard Glibc.write(fd, "probe", 5) == 5 else { throw SystemError("write failed") }
        guard fsync(fd) == 0 else { throw SystemError("fsync failed") }
    }

    /// statvfs(3): the space an unprivileged writer may still use, against `minimumFreeBytes`.
    private func checkFreeSpace() throws(SystemError) {
        var info = statvfs()
        guard statvfs(root, &info) == 0 else { throw SystemError("statvfs failed") }
        let (free, overflow) = UInt64(info.f_bavail).multipliedReportingOverflow(by: UInt64(info.f_frsize))
        let minimum = minimumFreeBytes
        guard overflow || free >= UInt64(max(0, minimum)) else {
            throw SystemError(
                "\(Self.mebibytes(free)) free on the file system, below the \(Self.mebibytes(UInt64(minimum))) writes may need",
                ENOSPC)
        }
    }

    private static func mebibytes(_ bytes: UInt64) -> String {
        String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }

    private func removeLeftoverTemporaryFiles() {
        guard let walker = FileManager.default.enumerator(atPath: root) else { return }
        while let relative = walker.nextObject() as? String {
            let fileName = (relative as NSString).lastPathComponent
            if Self.isTemporaryFileName(fileName) { unlink(root + "/" + relative) }
        }
    }

    private func failure(_ key: String?, _ error: SystemError) -> BlobStoreError {
        BlobStoreError(
            store: name, key: key, code: String(cString: strerror(error.code)),
            message: error.what, retryable: true)
    }
}

/// A failed system call: what was being done, and its errno (read when the error is made).
private struct SystemError: Error {
    var what: String
    var code: Int32

    init(_ what: String, _ code: Int32 = errno) {
        self.what = what
        self.code = code
    }
}

/// A lock-protected set of paths.
private final class KnownDirectories: @unchecked Sendable {
    private var paths = Set<String>()
    private let lock = NSLock()
    func contains(_ path: String) -> Bool { lock.withLock { paths.contains(path) } }
    func insert(_ path: String) { _ = lock.withLock { paths.insert(path) } }
    /// Removes `path` and every path below it.
    func remove(subtree path: String) {
        let prefix = path + "/"
        lock.withLock { paths = paths.filter { $0 != path && !$0.hasPrefix(prefix) } }
    }
}

import Foundation

/// The fuzz targets' mode without libFuzzer: runs every file named on the command line (or found
/// directly in a named directory, in name order, dot-files skipped) through `check`, which stops
/// the process on a violated invariant. Exits 2 without arguments and 1 on an unreadable file.
package func replayCorpus(_ name: String, _ check: (UnsafeRawBufferPointer) -> Void) {
    let arguments = CommandLine.arguments.dropFirst()
    if arguments.isEmpty {
        FileHandle.standardError.write(Data("usage: \(name) FILE|DIR...\n".utf8))
        exit(2)
    }
    var count = 0
    for path in arguments {
        for file in filesAt(path) {
            guard let data = FileManager.default.contents(atPath: file) else {
                FileHandle.standardError.write(Data("cannot read \(file)\n".utf8))
                exit(1)
            }
            data.withUnsafeBytes { check($0) }
            count += 1
        }
    }
    print("\(name): replayed \(count) inputs, all checks held")
}

private func filesAt(_ path: String) -> [String] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue
    else { return [path] }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.sorted().filter { !$0.hasPrefix(".") }.map { path + "/" + $0 }
}

import Foundation

/// Runs a program to completion and returns its exit status and output.
package func runProcess(
    _ executable: String, _ arguments: [String], input: [UInt8] = [],
    environment: [String: String]? = nil
) throws -> (status: Int32, stdout: [UInt8], stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let stdin = Pipe(), stdout = Pipe(), stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    // Read both outputs concurrently with writing the input, so large outputs cannot deadlock.
    let outData = LockedBox(Data()), errData = LockedBox(Data())
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        outData.set(stdout.fileHandleForReading.readDataToEndOfFile()); group.leave()
    }
    group.enter()
    DispatchQueue.global().async {
        errData.set(stderr.fileHandleForReading.readDataToEndOfFile()); group.leave()
    }
    if !input.isEmpty { try stdin.fileHandleForWriting.write(contentsOf: input) }
    try stdin.fileHandleForWriting.close()
    group.wait()
    process.waitUntilExit()
    return (process.terminationStatus, [UInt8](outData.get()), String(decoding: errData.get(), as: UTF8.self))
}

/// Decompresses with the system `gzip`, an implementation independent of ours.
package func systemGunzip(_ bytes: [UInt8]) throws -> [UInt8] {
    let gzip = try requireTool("gzip", install: "apt-get install -y gzip")
    let result = try runProcess(gzip, ["-dc"], input: bytes)
    guard result.status == 0 else { throw TestFailure("gzip -dc failed: \(result.stderr)") }
    return result.stdout
}

/// The absolute path of a tool on PATH, or a failure that says how to install it.
package func requireTool(_ name: String, install: String) throws -> String {
    for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(directory)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    throw TestFailure("'\(name)' is not installed; install it with: \(install)")
}

package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// A fresh directory under the system temporary directory, removed by `remove()`.
package struct TemporaryDirectory: Sendable {
    package let path: String

    package init(_ prefix: String = "persistor-test") throws {
        let base = FileManager.default.temporaryDirectory.path
        path = "\(base)/\(prefix)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    package func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// Every regular file below the directory (relative paths, sorted).
    package func files() -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
        var found: [String] = []
        while let relative = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + relative, isDirectory: &isDirectory), !isDirectory.boolValue {
                found.append(relative)
            }
        }
        return found.sorted()
    }
}

/// A value shared between threads behind a lock.
package final class LockedBox<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    package init(_ value: Value) { self.value = value }
    package func get() -> Value { lock.withLock { value } }
    package func set(_ newValue: Value) { lock.withLock { value = newValue } }
    package func update<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}

/// The repository root (two levels above this file's folder).
package let repositoryRoot: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The Python interpreter of the test virtualenv that holds the official SDKs.
package func testPython() throws -> String {
    let path = ProcessInfo.processInfo.environment["PERSISTOR_TEST_PYTHON"] ?? repositoryRoot + "/.venv/bin/python"
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestFailure(
            "the Python test environment is missing at \(path); run scripts/test once (it creates .venv from Tests/tools/requirements.txt)")
    }
    return path
}

/// Runs one of the Python peers in Tests/tools and returns its stdout parsed as JSON.
/// `environment` is added to (and overrides) the inherited environment.
package func runPythonTool(_ script: String, _ arguments: [String], environment: [String: String] = [:]) throws -> [String: Any] {
    let childEnvironment = environment.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let result = try runProcess(
        try testPython(), [repositoryRoot + "/Tests/tools/" + script] + arguments,
        environment: childEnvironment)
    guard result.status == 0 else { throw TestFailure("\(script) \(arguments.joined(separator: " ")) failed: \(result.stderr)") }
    guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any] else {
        throw TestFailure("\(script) printed no JSON object")
    }
    return object
}

/// A JSON string literal for test text: quotes, backslashes and control characters escaped,
/// everything else kept as is.
package func jsonStringLiteral(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

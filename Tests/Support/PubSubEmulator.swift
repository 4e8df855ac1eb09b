import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Process groups started by this test process and not yet killed; killed at exit, so a test that
/// leaks its emulator still leaves no Java process behind.
private let liveProcessGroups = LockedBox(Set<pid_t>())
private let killLiveGroupsAtExit: Void = {
    atexit {
        for group in liveProcessGroups.get() { _ = Glibc.kill(-group, SIGKILL) }
    }
}()

/// Google's Cloud Pub/Sub emulator (`gcloud beta emulators pubsub start`), run on a loopback port
/// with its data directory in a temporary directory.
///
/// The gcloud wrapper (Python) starts the emulator's Java process as its child, so killing the
/// wrapper alone would leave Java running: the emulator is started in a process group of its own
/// (its leader is the wrapper) and `stop()` / `deinit` / process exit SIGKILL the whole group. A
/// watchdog in the group kills it too if this test process dies without cleaning up (SIGKILL, a
/// crash), so no emulator outlives the test run.
///
/// A missing gcloud, emulator component or Java is a failure that says how to install them: the
/// test that needs the emulator must not pass (or skip) on a machine without it.
package final class PubSubEmulator: @unchecked Sendable {
    package static let installHint =
        "install it on Debian with `apt-get install google-cloud-cli google-cloud-cli-pubsub-emulator openjdk-17-jre-headless` from Google's Cloud SDK apt repository (or, with a Cloud SDK from an archive, `gcloud components install pubsub-emulator` and a Java 17 runtime)"

    package let project: String
    package let port: Int
    /// `host:port`, the value for `PUBSUB_EMULATOR_HOST`.
    package var hostPort: String { "127.0.0.1:\(port)" }
    package let logPath: String
    /// The process group's id (the gcloud wrapper's pid).
    package let processGroup: pid_t
    private let directory: TemporaryDirectory
    private let exited = LockedBox(false)

    package init(project: String = "persistor-e2e", startupTimeout: Double = 60) throws {
        _ = killLiveGroupsAtExit
        let (gcloud, _) = try Self.requireInstallation()
        self.project = project
        directory = try TemporaryDirectory("persistor-pubsub-emulator")
        let dataDirectory = directory.path + "/data"
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        logPath = directory.path + "/emulator.log"
        let port = try PersistorProcess.freePort()
        self.port = port

        // `sh -c SCRIPT sh PARENT gcloud ARGS…`: a watchdog subshell that kills the group once this
        // test process is gone, then exec gcloud, which stays the group's leader.
        let script = #"parent=$1; shift; ( while kill -0 "$parent" 2>/dev/null; do sleep 1; done; kill -KILL 0 ) & exec "$@""#
        let arguments = [
            "/bin/sh", "-c", script, "sh", String(getpid()), gcloud,
            "beta", "emulators", "pubsub", "start", "--host-port=127.0.0.1:\(port)",
            "--project=\(project)", "--data-dir=\(dataDirectory)",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
        environment["CLOUDSDK_CORE_DISABLE_USAGE_REPORTING"] = "true"
        environment["CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK"] = "true"
        environment["CLOUDSDK_CONFIG"] = directory.path + "/gcloud-config"
        processGroup = try Self.spawnInNewGroup(arguments, environment: environment, logPath: logPath)
        liveProcessGroups.update { _ = $0.insert(processGroup) }

        let deadline = Date().addingTimeInterval(startupTimeout)
        while !(log.contains("Server started") && PeerProcess.accepts(port: port)) {
            guard isRunning, Date() < deadline else {
                let running = isRunning
                stop()
                var message =
                    running
                    ? "the Pub/Sub emulator did not start on \(hostPort) within \(startupTimeout) s"
                    : "the Pub/Sub emulator exited during start-up"
                message += "; its log:\n\(log)"
                if log.contains("component") || log.contains("java") || log.contains("Java") {
                    message += "\nIf the emulator or Java is missing, \(Self.installHint)."
                }
                throw TestFailure(message)
            }
            usleep(100_000)
        }
    }

    deinit { stop() }

    package var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Whether the gcloud wrapper (the group's leader) is still running; reaps it once it exited.
    package var isRunning: Bool {
        exited.update { exited in
            if exited { return false }
            var status: Int32 = 0
            let result = waitpid(processGroup, &status, WNOHANG)
            // ECHILD: reaped already (by someone else's waitpid(-1)), so it is gone too.
            if result == processGroup || (result == -1 && errno == ECHILD) { exited = true }
            return !exited
        }
    }

    /// SIGKILLs the whole group (wrapper, Java, watchdog), reaps the wrapper, and waits (up to 10 s)
    /// until no member of the group is left. Removes the temporary directory unless
    /// PERSISTOR_E2E_KEEP is set.
    package func stop() {
        let group = processGroup
        guard liveProcessGroups.update({ $0.remove(group) }) != nil else { return }
        _ = Glibc.kill(-group, SIGKILL)
        exited.update { exited in
            if !exited {
                var status: Int32 = 0
                _ = waitpid(group, &status, 0)
                exited = true
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while !Self.groupMembers(group).isEmpty && Date() < deadline { usleep(20_000) }
        if ProcessInfo.processInfo.environment["PERSISTOR_E2E_KEEP"] == nil { directory.remove() }
    }

    /// Pids of live (not zombie) processes in process group `group`, read from /proc.
    package static func groupMembers(_ group: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        var members: [pid_t] = []
        for entry in entries {
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.range(of: ")", options: .backwards)
            else { continue }
            // After "(comm)": state ppid pgrp …
            let fields = stat[close.upperBound...].split(separator: " ")
            guard fields.count > 2, fields[0] != "Z", pid_t(fields[2]) == group else { continue }
            members.append(pid)
        }
        return members
    }

    /// gcloud's path and the emulator's launcher, or a failure that says what is missing and how to
    /// install it.
    package static func requireInstallation() throws -> (gcloud: String, emulator: String) {
        func missing(_ what: String) -> TestFailure {
            TestFailure("the Google Cloud Pub/Sub emulator is needed for this test and \(what); \(installHint)")
        }
        guard let gcloud = try? requireTool("gcloud", install: "") else { throw missing("gcloud is not on PATH") }
        guard (try? requireTool("java", install: "")) != nil else { throw missing("java is not on PATH") }
        // …/google-cloud-sdk/bin/gcloud → …/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
        let sdkRoot = URL(fileURLWithPath: gcloud).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent()
        let emulator = sdkRoot.appendingPathComponent("platform/pubsub-emulator/bin/cloud-pubsub-emulator").path
        guard FileManager.default.isExecutableFile(atPath: emulator) else {
            throw missing("its component is not installed (no \(emulator))")
        }
        return (gcloud, emulator)
    }

    /// posix_spawn with the child as the leader of a new process group, stdin from /dev/null and
    /// stdout and stderr to `logPath`.
    private static func spawnInNewGroup(_ arguments: [String], environment: [String: String], logPath: String) throws -> pid_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard result == 0 else { throw TestFailure("posix_spawn \(arguments[0]) failed: \(String(cString: strerror(result)))") }
        return pid
    }
}

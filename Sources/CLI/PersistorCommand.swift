import ArgumentParser
import Foundation

/// SIGTERM and SIGINT as the main thread takes them.
let terminationSignals = TerminationSignals()

@main
enum Main {
    /// Synchronous, so that the main thread never enters `dispatch_main()` (see `TerminationSignals`):
    /// it blocks the signals before any other thread exists, runs the command on the cooperative
    /// pool, and then only waits for signals. Nothing here uses the main queue or the main actor,
    /// which would then never run.
    static func main() {
        TerminationSignals.block()
        Task.detached {
            await PersistorCommand.main()
            exit(0)
        }
        terminationSignals.takeSignals()
    }
}

struct PersistorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "persistor",
        abstract: "Archives Pub/Sub push and Event Grid deliveries, unaltered, to blob storage.",
        subcommands: [Serve.self],
        defaultSubcommand: Serve.self)
}

import Foundation
import PersistorStores
import PersistorTestSupport
import Testing

/// A `StoreHTTPTransport` that answers from a script, one step per request in order, and records
/// every request it was sent: for checking what a store or the retrying client sends, and how it
/// takes each answer, without a network.
///
/// When the script is used up it answers `afterScript`; without one, a further request is a test
/// failure (recorded as an issue) and throws as if the host refused the connection.
package final class ScriptedTransport: StoreHTTPTransport, Sendable {
    package enum Step: Sendable {
        case answer(StoreHTTPResponse)
        /// No answer: the connection is refused (`URLError.cannotConnectToHost`).
        case refuse

        /// An answer with no body.
        package static func status(_ status: Int, headers: [String: String] = [:]) -> Step {
            .answer(StoreHTTPResponse(status: status, headers: headers))
        }
    }

    private let steps: LockedBox<[Step]>
    private let afterScript: StoreHTTPResponse?
    private let sent = LockedBox<[StoreHTTPRequest]>([])

    package init(_ steps: [Step] = [], afterScript: StoreHTTPResponse? = nil) {
        self.steps = LockedBox(steps)
        self.afterScript = afterScript
    }

    /// Answers `answers` in order.
    package convenience init(answers: [StoreHTTPResponse], afterScript: StoreHTTPResponse? = nil) {
        self.init(answers.map(Step.answer), afterScript: afterScript)
    }

    /// For building requests only: sending any is a test failure.
    package static var unused: ScriptedTransport { ScriptedTransport() }

    /// Every request sent so far, in order.
    package var requests: [StoreHTTPRequest] { sent.get() }

    package func send(_ request: StoreHTTPRequest, timeout: Duration) async throws -> StoreHTTPResponse {
        sent.update { $0.append(request) }
        let step = steps.update { $0.isEmpty ? afterScript.map(Step.answer) : $0.removeFirst() }
        switch step {
        case .answer(let response):
            return response
        case .refuse:
            throw URLError(.cannotConnectToHost)
        case nil:
            Issue.record("unexpected request to \(request.url): the transport's script has no answer left")
            throw URLError(.cannotConnectToHost)
        }
    }
}

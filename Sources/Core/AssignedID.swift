import Foundation

extension Record {
    /// The id given to a message or event that arrived without one: random, so two id-less
    /// deliveries are never taken for the same message.
    package static func assignedID() -> String { UUID().uuidString.lowercased() }
}

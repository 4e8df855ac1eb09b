import PersistorStores

extension ConfigReader {
    /// The `storeRetry` section.
    func storeRetry(_ field: ConfigField) throws(ConfigError) -> StoreRetryPolicy {
        let section = try section(
            of: field, path: "storeRetry",
            allowed: [
                "attemptTimeout", "totalTimeout", "maxAttempts", "initialBackoff", "maxBackoff",
            ])
        var policy = StoreRetryPolicy()
        if let f = section["attemptTimeout"] { policy.attemptTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["totalTimeout"] { policy.totalTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["maxAttempts"] { policy.maxAttempts = try integer(f, in: 1...100) }
        if let f = section["initialBackoff"] { policy.initialBackoff = try duration(f, zeroAllowed: true) }
        if let f = section["maxBackoff"] { policy.maxBackoff = try duration(f, zeroAllowed: true) }
        return policy
    }
}

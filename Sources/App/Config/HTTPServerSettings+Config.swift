import PersistorHTTP

extension ConfigReader {
    /// The `server` section: the listener's settings, and the shutdown timing that the App applies.
    func server(_ field: ConfigField) throws(ConfigError) -> (HTTPServerSettings, ShutdownSettings) {
        let section = try section(
            of: field, path: "server",
            allowed: [
                "host", "port", "maxBodyBytes", "maxHeaderBytes", "headerTimeout", "bodyTimeout",
                "idleTimeout", "maxConnections", "probeConnections", "maxInFlightBodyBytes", "maxConcurrentStreams", "drainDelay", "shutdownGrace",
            ])
        var server = HTTPServerSettings()
        var shutdown = ShutdownSettings()
        if let f = section["host"] { server.host = try string(f) }
        if let f = section["port"] { server.port = try integer(f, in: 0...65535) }
        if let f = section["maxBodyBytes"] { server.limits.maxBodyBytes = try size(f) }
        if let f = section["maxHeaderBytes"] { server.limits.maxHeaderBytes = try size(f) }
        if let f = section["headerTimeout"] { server.headerTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["bodyTimeout"] { server.bodyTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["idleTimeout"] { server.idleTimeout = try duration(f, zeroAllowed: false) }
        if let f = section["maxConnections"] { server.maxConnections = try integer(f, in: 1...Int.max) }
        if let f = section["probeConnections"] { server.probeConnections = try integer(f, in: 0...1024) }
        if let f = section["maxInFlightBodyBytes"] { server.maxInFlightBodyBytes = try size(f) }
        if let f = section["maxConcurrentStreams"] { server.maxConcurrentStreams = try integer(f, in: 1...Int(Int32.max)) }
        if let f = section["drainDelay"] { shutdown.drainDelay = try duration(f, zeroAllowed: true) }
        if let f = section["shutdownGrace"] { shutdown.shutdownGrace = try duration(f, zeroAllowed: false) }
        return (server, shutdown)
    }
}

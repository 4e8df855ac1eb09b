import Foundation
import PersistorAuth

extension ConfigReader {
    func auth(_ field: ConfigField, path: String, routePath: String) throws(ConfigError) -> AuthSettings {
        let section = try section(of: field, path: path, allowed: ["oidc", "entra", "querySecret", "headerSecret", "clockSkew"])
        guard section.fields.keys.contains(where: { $0 != "clockSkew" }) else {
            throw fail(
                field.line,
                "'auth' in \(routePath) must name at least one method (oidc, entra, querySecret, headerSecret); leave 'auth' out for an open route")
        }
        var auth = AuthSettings()
        if let f = section["oidc"] { auth.oidc = try oidc(f, path: "\(path).oidc") }
        if let f = section["entra"] { auth.entra = try entra(f, path: "\(path).entra") }
        if let f = section["querySecret"] {
            auth.querySecret = try secret(f, path: "\(path).querySecret", nameKey: "param")
        }
        if let f = section["headerSecret"] {
            auth.headerSecret = try secret(f, path: "\(path).headerSecret", nameKey: "header")
        }
        if let f = section["clockSkew"] { auth.clockSkew = try duration(f, zeroAllowed: true) }
        return auth
    }

    func oidc(_ field: ConfigField, path: String) throws(ConfigError) -> OIDCSettings {
        let section = try section(of: field, path: path, allowed: ["audience", "serviceAccounts", "issuers", "jwksURL"])
        var oidc = OIDCSettings(
            audience: try string(try require("audience", in: section)),
            serviceAccounts: try stringList(try require("serviceAccounts", in: section)))
        if let f = section["issuers"] { oidc.issuers = try stringList(f) }
        if let f = section["jwksURL"] { oidc.jwksURL = try jwksURL(f) }
        return oidc
    }

    func entra(_ field: ConfigField, path: String) throws(ConfigError) -> EntraSettings {
        let section = try section(of: field, path: path, allowed: ["tenant", "audience", "appId", "issuers", "role", "jwksURL"])
        let tenantField = try require("tenant", in: section)
        let tenant = try string(tenantField)
        // Tokens carry the tenant id (a GUID) in `iss` and `tid`, so a domain name could never match.
        guard UUID(uuidString: tenant) != nil else {
            throw fail(tenantField.line, "invalid tenant '\(Self.display(tenant))': use the directory (tenant) id, a GUID")
        }
        let audienceField = try require("audience", in: section)
        let audiences: [String]
        if case .sequence = audienceField.value {
            audiences = try stringList(audienceField)
        } else {
            audiences = [try string(audienceField, expected: "a string or a list of strings")]
        }
        var appId = EntraSettings.eventGridAppId
        var issuers: [String]?
        var role: String?
        var jwksURL: String?
        if let f = section["appId"] { appId = try string(f) }
        if let f = section["issuers"] { issuers = try stringList(f) }
        if let f = section["role"] { role = try string(f) }
        if let f = section["jwksURL"] { jwksURL = try self.jwksURL(f) }
        return EntraSettings(
            tenant: tenant, audiences: audiences, appId: appId,
            issuers: issuers, role: role, jwksURL: jwksURL)
    }

    /// Keys must come over https; plain http only from this machine (tests, local proxies).
    func jwksURL(_ field: ConfigField) throws(ConfigError) -> String {
        let text = try string(field)
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased() else {
            throw fail(field.line, "'jwksURL' must be a URL, got '\(Self.display(text))'")
        }
        let loopback = host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        guard scheme == "https" || (scheme == "http" && loopback) else {
            throw fail(field.line, "'jwksURL' must use https (http only for loopback hosts), got '\(Self.display(text))'")
        }
        return text
    }

    func secret(_ field: ConfigField, path: String, nameKey: String) throws(ConfigError) -> SecretSettings {
        let section = try section(of: field, path: path, allowed: [nameKey, "values"])
        let nameField = try require(nameKey, in: section)
        let name = try string(nameField)
        if nameKey == "header", !Self.isHTTPToken(name) {
            throw fail(nameField.line, "'header' must be an HTTP header name, got '\(Self.display(name))'")
        }
        return SecretSettings(name: name, values: try stringList(try require("values", in: section)))
    }

    /// RFC 9110 token characters.
    static func isHTTPToken(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { isASCIIAlphanumeric($0) || "!#$%&'*+-.^_`|~".utf8.contains($0) }
    }
}

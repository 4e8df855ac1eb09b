import PersistorCore
import PersistorHTTP

/// CloudEvents HTTP protocol binding pieces that are not JSON: binary-mode header values
/// (CloudEvents HTTP binding §3.1.3.2,
/// https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md) and
/// the webhook abuse-protection handshake (CloudEvents webhook spec §4,
/// https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md;
/// docs/deliveries-and-auth.md#the-options-handshake).
package enum CloudEventsBinding {
    package struct HeaderValueError: Error, Equatable, Sendable {
        package var reason: String
    }

    /// Decodes one `ce-*` header value into the attribute value: an RFC 7230 quoted-string
    /// (`"…"` with `\` escapes) is unquoted first, then `%XX` escapes (either hex case) are decoded
    /// once, and the resulting bytes must be valid UTF-8 (so overlong `%C0%A0` is rejected).
    ///
    /// Raw non-ASCII bytes (against the spec) arrive from the HTTP/1 parser as UTF-8 text when
    /// they are valid UTF-8 and as ISO-8859-1 otherwise; either way they are kept as that text.
    package static func decodeHeaderValue(_ value: String) throws(HeaderValueError) -> String {
        var bytes = Array(value.utf8)
        let quote = UInt8(ascii: "\"")
        if bytes.count >= 2, bytes.first == quote, bytes.last == quote {
            bytes = try unquote(bytes)
        }
        let decoded: [UInt8]
        do {
            decoded = try PercentDecoding.decode(bytes)
        } catch {
            throw HeaderValueError(reason: "invalid percent-encoding at offset \(error.offset)")
        }
        guard let text = String(validating: decoded, as: UTF8.self) else {
            throw HeaderValueError(reason: "value is not valid UTF-8 after percent-decoding")
        }
        return text
    }

    /// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE; quoted-pair = "\" octet.
    static func unquote(_ bytes: [UInt8]) throws(HeaderValueError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count - 2)
        let end = bytes.count - 1  // the closing quote
        var index = 1
        while index < end {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < end else {
                    throw HeaderValueError(reason: "malformed quoted-string (escaped closing quote)")
                }
                out.append(bytes[index + 1])
                index += 2
            } else if byte == UInt8(ascii: "\"") {
                throw HeaderValueError(reason: "malformed quoted-string (unescaped quote inside)")
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out
    }
}

extension EventGridDecoder {
    // MARK: Binary mode

    /// A binary-mode CloudEvent: the body is the data, every `ce-*` header an attribute (name
    /// without the prefix, lower-cased; values decoded by `CloudEventsBinding.decodeHeaderValue`,
    /// in header order). A repeated header (in any case) is one attribute: its field lines are
    /// joined with ", " as RFC 9110 §5.3 combines them, then decoded, so no key appears twice and
    /// no value is lost. A `ce-datacontenttype` header is against the spec but kept as an
    /// attribute rather than rejected. One malformed value quarantines the request.
    func binary(_ request: HTTPRequest, receivedAt: UTCTime) -> Delivery {
        let headers = request.head.headers
        let contentType = headers["content-type"]
        func quarantine(_ reason: String) -> Delivery {
            Self.quarantine(
                route: route, body: request.body, receivedAt: receivedAt, reason: reason,
                contentType: contentType)
        }
        var fields: [(name: String, attribute: String, value: String)] = []
        var fieldIndex: [String: Int] = [:]
        for (name, value) in headers {
            guard name.utf8.count >= 3, name.prefix(3).caseInsensitiveEquals("ce-") else { continue }
            let attribute = name.dropFirst(3).lowercased()
            guard !attribute.isEmpty else {
                return quarantine("header \(name) names no CloudEvents attribute")
            }
            if let index = fieldIndex[attribute] {
                fields[index].value += ", " + value
            } else {
                fieldIndex[attribute] = fields.count
                fields.append((name, attribute, value))
            }
        }
        var attributes: [(key: String, value: String)] = []
        attributes.reserveCapacity(fields.count)
        for field in fields {
            do throws(CloudEventsBinding.HeaderValueError) {
                attributes.append((field.attribute, try CloudEventsBinding.decodeHeaderValue(field.value)))
            } catch {
                return quarantine("header \(field.name): \(error.reason)")
            }
        }
        func attribute(_ name: String) -> String? { attributes.first { $0.key == name }?.value }

        var delivery = Delivery(records: [])
        let type = attribute("type")
        if let type, type.caseInsensitiveEquals(Self.deletedEventType) {
            delivery.deletionEvents = 1
        }
        var meta: [(key: String, value: MetaValue)] = []
        for key in ["type", "source", "subject", "specversion"] {
            if let value = attribute(key) { meta.append((key, .string(value))) }
        }
        if let contentType { meta.append(("contentType", .string(contentType))) }
        meta.append(contentsOf: Self.headerMeta(headers))
        let id = attribute("id")
        if id == nil { meta.append(("idAssigned", .bool(true))) }
        delivery.records = [
            Record(
                id: id ?? Record.assignedID(), source: .cloudevents, route: route,
                receivedAt: receivedAt, eventTime: attribute("time"), attributes: attributes,
                meta: meta, payload: request.body)
        ]
        if let failure = validationMismatch(headers, delivery: delivery) {
            return quarantine(failure)
        }
        return delivery
    }

    // MARK: Abuse-protection handshake

    /// The answer to the CloudEvents webhook abuse-protection handshake (OPTIONS).
    ///
    /// - no (or an empty) `WebHook-Request-Origin` → 400;
    /// - an origin outside `allowedOrigins` (compared case-insensitively) → 403, without
    ///   `WebHook-Allowed-Origin`, so the sender sees no grant;
    /// - otherwise 200 with `WebHook-Allowed-Origin` (the origin as sent, or `*` when
    ///   `allowedOrigins` contains `"*"`) and `WebHook-Allowed-Rate` (the configured `allowedRate`,
    ///   else `*`: Persistor imposes no rate, and the header is sent whether or not the request
    ///   asked with `WebHook-Request-Rate`, as the spec's SHOULD advises).
    /// Every answer carries `Allow: POST, OPTIONS`. A `WebHook-Request-Callback` does not change
    /// the answer: permission is granted synchronously through the headers (see `callbackURL`).
    package func handshake(_ head: HTTPRequestHead) -> HTTPResponse {
        var headers = HTTPHeaders()
        guard let origin = head.headers["webhook-request-origin"], !origin.isEmpty else {
            headers.add("Allow", "POST, OPTIONS")
            return .text(400, "missing WebHook-Request-Origin", headers: headers)
        }
        let granted: String
        if let allowedOrigins {
            if allowedOrigins.contains("*") {
                granted = "*"
            } else if allowedOrigins.contains(where: { $0.caseInsensitiveEquals(origin) }) {
                granted = origin
            } else {
                headers.add("Allow", "POST, OPTIONS")
                return .text(
                    403, "WebHook-Request-Origin \(origin) is not an allowed origin for this route",
                    headers: headers)
            }
        } else {
            granted = origin
        }
        headers.add("WebHook-Allowed-Origin", granted)
        headers.add("WebHook-Allowed-Rate", allowedRate ?? "*")
        headers.add("Allow", "POST, OPTIONS")
        return HTTPResponse(status: 200, headers: headers)
    }

    /// The `WebHook-Request-Callback` URL of a handshake request, for logging.
    package static func callbackURL(_ head: HTTPRequestHead) -> String? {
        guard let url = head.headers["webhook-request-callback"], !url.isEmpty else { return nil }
        return url
    }
}

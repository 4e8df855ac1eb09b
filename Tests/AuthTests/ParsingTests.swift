import Testing

@testable import PersistorAuth

@Suite("JSON, base64url and JWT parsing")
struct ParsingTests {
    private func parse(_ text: String) -> ClaimValue? {
        try? ClaimParser.parse(Array(text.utf8))
    }

    @Test func jsonValues() {
        #expect(
            parse(#"{"a":true,"b":1,"c":1.5e3,"d":"x\u00e9\ud83d\ude00\n","e":[null,false],"f":{}}"#)
                == .object([
                    "a": .bool(true), "b": .number(1), "c": .number(1500), "d": .string("xé😀\n"),
                    "e": .array([.null, .bool(false)]), "f": .object([:]),
                ]))
        #expect(parse(" [ -0 , 0.5 ] ") == .array([.number(-0.0), .number(0.5)]))
        #expect(parse("1700000000") == .number(1_700_000_000))
    }

    @Test(arguments: [
        #"{"a":1,"a":2}"#,  // duplicate member
        #"{"a":1,}"#,  // trailing comma
        #"[1,]"#,
        #"{"a":01}"#,  // leading zero
        #"{"a":1."#,
        #"{"a":tru}"#,
        "{\"a\":\"\u{01}\"}",  // raw control character
        #"{"a":"x"} x"#,  // trailing garbage
        #"{'a':1}"#,
        "",
        String(repeating: "[", count: 40) + String(repeating: "]", count: 40),  // too deep
    ])
    func jsonRejects(_ text: String) {
        #expect(parse(text) == nil)
    }

    @Test func jsonRejectsInvalidUTF8() {
        #expect((try? ClaimParser.parse([0x22, 0xC3, 0x28, 0x22])) == nil)
    }

    @Test func tokenStructure() throws {
        let token = mint(Google.claims())
        let parsed = try ParsedToken.parse(token).get()
        #expect(parsed.alg == "RS256" && parsed.kid == "a1")
        #expect(parsed.claims["email_verified"] == .bool(true))
        #expect(parsed.signature.count == 256)
        #expect(String(decoding: parsed.signingInput, as: UTF8.self) == token.split(separator: ".").prefix(2).joined(separator: "."))
        #expect(ParsedToken.parse("a.b").failureReason == "malformed token: not 3 segments")
        #expect(ParsedToken.parse("..").failureReason == "malformed token: bad JSON")
        #expect(ParsedToken.parse("e30.W10.").failureReason == "malformed token: bad JSON", "payload must be an object")
        #expect(ParsedToken.parse("e30.e30.").failureReason == nil)
    }

    @Test func bearerHeaderParsing() {
        #expect(RouteAuthenticator.bearerToken("Bearer abc") == "abc")
        #expect(RouteAuthenticator.bearerToken("BEARER   abc  ") == "abc")
        #expect(RouteAuthenticator.bearerToken("Bearer") == "")
        #expect(RouteAuthenticator.bearerToken("Bearerabc") == nil)
        #expect(RouteAuthenticator.bearerToken("Basic abc") == nil)
    }
}

extension Result where Failure == MalformedToken {
    var failureReason: String? {
        if case .failure(let problem) = self { return problem.reason }
        return nil
    }
}

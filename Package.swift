// swift-tools-version:6.0
import PackageDescription

// Data flows through the targets in this order: Server (sockets, HTTP) → Auth (tokens, secrets)
// → Protocols (Pub/Sub, Event Grid decoding into records) → Archive (batching, gzip, object layout)
// → Stores (BlobWriter implementations). None of them depends on the next: they share only
// PersistorCore (the record model, the BlobWriter protocol, and the byte helpers every stage uses)
// and PersistorJSON, the strict JSON scanner Auth and Protocols use.
// App wires them together from the configuration; CLI is the `persistor` executable.
let package = Package(
    name: "persistor",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "persistor", targets: ["persistor"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"5.0.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "CNghttp2", path: "Sources/CNghttp2", pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]),
        // epoll(7) is in glibc, but not in Swift's Glibc module.
        .systemLibrary(name: "CEpoll", path: "Sources/CEpoll"),
        .target(name: "PersistorCore", path: "Sources/Core"),
        .target(name: "PersistorHTTP", dependencies: ["CEpoll", "CNghttp2", "PersistorCore"], path: "Sources/Server"),
        .target(name: "PersistorJSON", dependencies: ["PersistorCore"], path: "Sources/JSON"),
        .target(
            name: "PersistorAuth",
            dependencies: [
                "PersistorCore", "PersistorHTTP", "PersistorJSON",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/Auth"),
        .target(
            name: "PersistorStores",
            dependencies: [
                "PersistorCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            path: "Sources/Stores"),
        .target(
            name: "PersistorArchive",
            dependencies: ["CZlib", "PersistorCore", .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/Archive"),
        .target(
            name: "PersistorProtocols",
            dependencies: [
                "PersistorCore", "PersistorHTTP", "PersistorJSON",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/Protocols"),
        .target(
            name: "PersistorApp",
            dependencies: [
                "PersistorCore", "PersistorHTTP", "PersistorProtocols", "PersistorAuth", "PersistorArchive",
                "PersistorStores",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            path: "Sources/App"),
        .executableTarget(
            name: "persistor",
            dependencies: [
                "PersistorApp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/CLI"),
        .target(name: "PersistorTestSupport", path: "Tests/Support"),
        // withPersistor(.inProcess | .binary) and the shared fakes (an in-memory store, a scripted
        // store transport, a static JWKS fetcher); for the unit test targets, never EndToEndTests.
        .target(
            name: "PersistorTesting",
            dependencies: [
                "PersistorApp", "PersistorCore", "PersistorStores", "PersistorAuth", "PersistorTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/Testing"),
        .testTarget(name: "CoreTests", dependencies: ["PersistorCore", "PersistorTestSupport"]),
        .testTarget(name: "JSONTests", dependencies: ["PersistorCore", "PersistorJSON", "PersistorTestSupport"]),
        .testTarget(name: "HTTPTests", dependencies: ["PersistorCore", "PersistorHTTP", "PersistorTestSupport"]),
        .testTarget(name: "ProtocolsTests", dependencies: ["PersistorCore", "PersistorProtocols", "PersistorTestSupport"]),
        .testTarget(name: "AuthTests", dependencies: ["PersistorCore", "PersistorAuth", "PersistorHTTP", "PersistorTestSupport"]),
        .testTarget(
            name: "ArchiveTests", dependencies: ["PersistorCore", "PersistorArchive", "PersistorStores", "PersistorTestSupport", "PersistorTesting"]),
        .testTarget(name: "StoresTests", dependencies: ["PersistorCore", "PersistorStores", "PersistorTestSupport", "PersistorTesting"]),
        .testTarget(
            name: "AppTests",
            dependencies: [
                "PersistorCore", "PersistorApp", "PersistorArchive", "PersistorAuth", "PersistorHTTP", "PersistorStores", "PersistorTestSupport",
                "PersistorTesting",
            ]),
        .testTarget(name: "EndToEndTests", dependencies: ["PersistorTestSupport"]),
        // libFuzzer targets (scripts/fuzz builds them with -DFUZZING -sanitize=fuzzer); in a normal
        // build they replay corpus files given on the command line. Each depends only on what it fuzzes.
        .target(name: "FuzzReplay", path: "Tests/Fuzz/FuzzReplay"),
        .executableTarget(name: "FuzzHTTPParser", dependencies: ["PersistorHTTP", "FuzzReplay"], path: "Tests/Fuzz/FuzzHTTPParser"),
        .executableTarget(name: "FuzzJSONScanner", dependencies: ["PersistorJSON", "FuzzReplay"], path: "Tests/Fuzz/FuzzJSONScanner"),
    ]
)

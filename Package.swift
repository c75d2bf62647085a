// swift-tools-version:6.0
import PackageDescription

/// What the server side and the client side each build on: the shared transport core, NIO, TLS and SHA-256.
let sideDependencies: [Target.Dependency] = [
    "XferTransport",
    "XferProtocol",
    "XferEvents",
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
    .product(name: "NIOWebSocket", package: "swift-nio"),
    .product(name: "Crypto", package: "swift-crypto"),
    .product(name: "NIOSSL", package: "swift-nio-ssl"),
]

let package = Package(
    name: "xfer",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "xfer", targets: ["xfer"]),
        // For the fuzz targets in Fuzz/ (a separate package, built with --sanitize=fuzzer).
        .library(name: "XferProtocol", targets: ["XferProtocol"]),
        .library(name: "XferTransport", targets: ["XferTransport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(
            name: "CXferZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // The upload client's compressor; the zlib format it writes is read back with zlib.
        .systemLibrary(
            name: "CXferDeflate",
            providers: [.apt(["libdeflate-dev"])]
        ),
        .target(
            name: "CXferAccel",
            linkerSettings: [.linkedLibrary("z")]
        ),
        .target(
            name: "XferProtocol",
            dependencies: [
                "CXferZlib",
                "CXferDeflate",
                "CXferAccel",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "XferEvents",
            dependencies: []
        ),
        .target(
            name: "XferTransport",
            dependencies: [
                "XferProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .target(
            name: "XferServerSide",
            dependencies: sideDependencies + [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // `serve --cluster`: PostgreSQL as the bus, the message store and the keeper of upload leases.
        .target(
            name: "XferCluster",
            dependencies: [
                "XferServerSide",
                "XferProtocol",
                "XferEvents",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "XferClientSide",
            dependencies: sideDependencies
        ),
        .executableTarget(
            name: "xfer",
            dependencies: [
                "XferProtocol",
                "XferServerSide",
                "XferClientSide",
                "XferCluster",
                "XferEvents",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "XferProtocolTests",
            dependencies: [
                "XferProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "XferClusterTests",
            dependencies: ["XferCluster", "XferProtocol"]
        ),
        .testTarget(
            name: "XferEventsTests",
            dependencies: ["XferEvents"]
        ),
        .testTarget(
            name: "XferTransportTests",
            dependencies: [
                "XferTransport",
                "XferServerSide",
                "XferClientSide",
                "XferProtocol",
                "XferEvents",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "XferCLITests",
            dependencies: ["XferEvents"]
        ),
    ]
)

// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for xfer's decoders, kept out of the main package: an executable whose entry point is
// `LLVMFuzzerTestOneInput` links only with `--sanitize=fuzzer`, so it would break `swift build --build-tests`.
// Build and run with .ci/conformance (or see Fuzz/README.md).
let package = Package(
    name: "xfer-fuzz",
    dependencies: [
        .package(name: "xfer", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        .executableTarget(
            name: "FuzzWireMessage",
            dependencies: [
                .product(name: "XferProtocol", package: "xfer"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzFrameDecoder",
            dependencies: [
                .product(name: "XferTransport", package: "xfer"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FuzzFields",
            dependencies: [
                .product(name: "XferProtocol", package: "xfer"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)

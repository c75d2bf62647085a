import NIOCore

/// Constant-time comparison of two secrets, so that response timing does not reveal how much of a token matched.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    // A length mismatch must count in full: truncating `x.count ^ y.count` to a byte would let lengths that
    // differ by a multiple of 256 compare equal when the longer tail is NUL bytes.
    var difference: UInt8 = x.count == y.count ? 0 : 1
    for index in 0..<max(x.count, y.count) {
        let left = index < x.count ? x[index] : 0
        let right = index < y.count ? y[index] : 0
        difference |= left ^ right
    }
    return difference == 0
}

extension HTTPRoutes {
    /// The `Content-Type` of the Prometheus text exposition format, version 0.0.4.
    static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Adds the routes for operators and people: `GET /metrics` (when the server counts its events in `metrics`)
    /// and `GET /`, the browser page. Like `GET /health`, neither needs the token: the metrics hold counts, never
    /// texts or names, and the page asks for the token before it connects.
    mutating func addOperations(metrics: MetricsEventSink?) {
        if let metrics {
            self.add(.GET, "/metrics") { _ in
                Response(status: .ok, contentType: Self.prometheusContentType, body: metrics.exposition())
            }
        }
        self.add(.GET, "/") { _ in
            Response(status: .ok, contentType: "text/html; charset=utf-8", body: BrowserPage.html)
        }
    }
}

"""Inbound adapters, one per trigger kind: HTTP (``http``), the Event Grid submit (``eventgrid``) and
the sweep timer (``timer``). They parse and validate what arrives (one submit parser,
``submits``, for HTTP and Event Grid), call a use case and render or log its outcome. The use
cases load at the first call, not at import, which keeps cold start low."""

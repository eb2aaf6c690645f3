"""Who may call: Entra ID bearer tokens (``entra``) and per-run signed URLs (``signing``).

Inbound concerns, importable without the HTTP layer: each check takes plain values (a header, a
run id) and raises the app's own errors, which the HTTP adapter turns into answers.
"""

"""The web page: one more way to drop a recording into the inbox, and a view of the ledger.

``hushdrop web`` (or ``hushdrop watch`` with ``web: {enabled: true}``) serves it. The page
never transcribes anything itself: an upload or a microphone take is streamed to disk and
renamed into ``inbox/<profile>/``, where the watcher claims it like any copied file; the
queue, results and search read what the ledger and the outbox hold. See docs/web.md.

Modules: ``address`` (listen addresses), ``security`` (passwords, sessions, CSRF, login
rate limit), ``uploads`` (streaming into the inbox), ``jobs`` (the queue, results, edits,
retry and delete), ``catalog`` (search and per-job statistics), ``metrics`` (Prometheus),
``i18n`` (English and Simplified Chinese), ``app`` (routes) and ``server`` (uvicorn).
This package imports nothing heavy on its own; ``app`` and ``server`` need FastAPI and uvicorn.
"""

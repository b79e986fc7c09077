"""The publishing service: the Azure DevOps Symbol Service REST API in front of a symbol store.

Pure modules (no I/O, checked by import-linter): ``vsohash``, ``wire`` (models), ``errors``,
``apiversion``, ``routes``, ``tokens``, ``entries``. The store side (``blobs``, ``manifests``) writes
through the sidecar's backend interface; ``requeststore`` declares where SymbolRequests are kept;
``handlers`` (shared), ``requesthandlers``, ``entryhandlers``, ``blobhandlers`` (the operations),
``api``, ``app`` and ``cli`` are the aiohttp service. See ``docs/publishing.md``.
"""

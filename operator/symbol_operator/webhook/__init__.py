"""The sidecar injection webhook: a mutating admission webhook that gives opted-in pods the proxy.

``injection`` is pure (a pod body and settings in, a JSON patch out) and knows neither HTTP nor
Kubernetes clients; ``serving`` is the small aiohttp server the API server calls over TLS. The
import-linter contract in ``pyproject.toml`` keeps it that way.
"""

"""The thin aiohttp layer: routes, handlers, application lifecycle."""

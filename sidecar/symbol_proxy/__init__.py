"""symbol-proxy: a caching symbol server that fans lookups out over configured sources.

The package is split by role. ``objects``, ``layouts``, ``filters``, ``keys`` and ``config`` are the
pure core: they import no network or filesystem library and are tested against the shared vector
files. ``backends`` hides each storage kind behind one small interface, ``cache`` owns the bytes on
disk, ``resolving`` turns a request into upstream candidates, and ``server`` is the thin aiohttp layer.
"""

__version__ = "0.1.0"

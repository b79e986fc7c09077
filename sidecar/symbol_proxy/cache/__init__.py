"""The cache component: bytes on disk (``store``) and the downloads that fill it (``inflight``)."""

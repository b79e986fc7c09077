"""Turning a layout's relative location into what a backend addresses (``layouts.md`` §8).

* HTTP: the location is appended to the source URL segment by segment, each percent-encoded, the
  way Symbolicator does it with ``url``'s ``path_segments_mut().pop_if_empty().extend(…)``. So a
  file name with a space, ``#``, ``?`` or ``%`` reaches the server as that name, and ``foo//bar``,
  ``/foo`` and a base URL with or without a trailing slash all give the same URL.
* S3 and GCS: the object key is ``prefix/location`` with the prefix's slashes trimmed at both ends.
* Display/cache URIs: ``s3://bucket/key`` and ``gs://bucket/key``, percent-encoded like upstream's
  ``RemoteFileUri::from_parts`` for the keys our layouts produce.

Pure string functions: the HTTP backend wraps the result in ``yarl.URL(…, encoded=True)``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

__all__ = ["gcs_object_url", "join_key", "join_url", "remote_uri"]

# What the WHATWG "path percent-encode set" leaves alone, besides letters, digits and `_.-~`
# (which ``quote`` never encodes). A path segment of a special URL (http/https) also encodes
# `/`, `%` and `\`; a whole path of a non-special URL (s3, gs) keeps `/` and `%`.
_SEGMENT_SAFE = "!$&'()*+,:;=@[]^|"
_PATH_SAFE = _SEGMENT_SAFE + "/%\\"
_TAB_NEWLINE = str.maketrans("", "", "\t\n\r")  # the URL parser drops these wherever they appear
_AUTHORITY_END = re.compile(r"[/?#]")
_QUERY_START = re.compile(r"[?#]")


def _encode_segment(segment: str) -> str:
    segment = segment.translate(_TAB_NEWLINE)
    if segment.split(";", 1)[0] in (".", ".."):
        # ``..;x`` is a parent directory to servers that strip ``;`` path parameters (Tomcat,
        # Jetty, Spring): encoded, the ``;`` is a plain character of the name and no way out.
        return quote(segment, safe=_SEGMENT_SAFE.replace(";", ""))
    return quote(segment, safe=_SEGMENT_SAFE)


def join_url(base_url: str, location: str) -> str:
    """``location`` appended to ``base_url`` as a directory, each non-empty segment percent-encoded.

    ``.`` and ``..`` segments are skipped (never a way out of the base), and so is the ``;`` that would
    make ``..;`` one to a server that strips path parameters; empty segments collapse, and
    a query or fragment of the base URL stays at the end. The base's scheme and authority are kept as
    written; configs give them in normal form.
    """
    scheme_end = base_url.find("://")
    if scheme_end < 0:
        raise ValueError(f"not an absolute URL: {base_url!r}")
    match = _AUTHORITY_END.search(base_url, scheme_end + 3)
    split = match.start() if match else len(base_url)
    origin, rest = base_url[:split], base_url[split:]
    match = _QUERY_START.search(rest)
    path, tail = (rest[: match.start()], rest[match.start() :]) if match else (rest, "")
    if not path:
        path = "/"
    elif len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    parts = [path]
    for segment in location.translate(_TAB_NEWLINE).split("/"):
        if not segment or segment in (".", ".."):
            continue
        if len(parts) > 1 or path != "/":
            parts.append("/")
        parts.append(_encode_segment(segment))
    return origin + "".join(parts) + tail


def join_key(prefix: str, location: str) -> str:
    """The S3/GCS object key: ``prefix/location``, the prefix's slashes trimmed at both ends."""
    trimmed = prefix.strip("/")
    return f"{trimmed}/{location}" if trimmed else location


def remote_uri(scheme: str, bucket: str, key: str) -> str:
    """``s3://bucket/key`` / ``gs://bucket/key`` with the key percent-encoded (spaces → ``%20``).

    Upstream resolves the key as a relative URL reference, so a ``?``, ``#`` or dot segment in a key
    would turn into a query, a fragment or a shorter path there; here they are encoded or kept
    literally instead. Layout paths contain none of them except in exotic file names.
    """
    return f"{scheme}://{bucket}/{quote(key.translate(_TAB_NEWLINE), safe=_PATH_SAFE)}"


def gcs_object_url(bucket: str, key: str) -> str:
    """The GCS JSON API object URL (add ``?alt=media`` to download): the key is one path segment."""
    return f"https://storage.googleapis.com/storage/v1/b/{_encode_segment(bucket)}/o/{_encode_segment(key)}"

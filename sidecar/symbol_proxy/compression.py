"""Unpacking downloaded containers, and packing a file into a CAB for ``_`` requests.

Upstream stores hand out debug files wrapped in a container (``shared/specs/layouts.md`` §5): a
SymStore ``foo.pd_`` is a Microsoft Cabinet holding ``foo.pdb`` (``shared/specs/ssqp-keys.md`` §6),
other stores keep gzip, zstd, zlib or single-entry zip files under the plain name. The proxy caches
the unpacked file, so it can check the file's magic and serve it under every name. In the other
direction, a client asking for ``foo.pd_`` when only ``foo.pdb`` is cached gets a CAB streamed from
the plain file (:func:`stored_cab`: uncompressed blocks, so every size is known before the first
byte; ``shared/specs/clients.md`` §7.2). :func:`write_cab` (MSZIP) is no longer on the request path;
the tests use it to lay out compressed upstream stores.

Design constraints, and why:

* Debug files reach several GiB and a body may be hostile (a few KiB of zstd can claim a TiB), so
  everything streams in blocks of at most :data:`BLOCK` bytes, the output is counted before it is
  written and unpacking stops with :class:`TooLarge` as soon as ``max_size`` would be exceeded.
  Neither the input nor the output is ever held in memory whole.
* The functions are synchronous and work on paths, file objects and byte strings only (no network,
  no aiohttp): the server runs them in an executor thread. Formats that can be read front to back
  (gzip, zlib, zstd, an in-order single-file CAB with an uncompressed or MSZIP folder, a one-entry
  zip with a stored or deflated entry) are also unpacked while the body arrives
  (:class:`StreamUnpacker`), by the very parsers :func:`unpack` runs over a file.
* The CAB reader and writer are written here from the format description rather than taken from a
  library: the only pure-Python one reads MSZIP only and loads whole files. MSZIP (each CFDATA block
  is ``CK`` + a raw deflate stream whose 32 KiB history carries over from the previous block) and
  uncompressed folders are decoded in-process. LZX and Quantum folders, which are rare for symbol
  files, are handed to ``cabextract`` when it is installed, otherwise they are :class:`Malformed`.
* CFDATA checksums are verified when a block carries one (``csum`` ≠ 0, as libmspack does) and
  always written by :func:`write_cab`; a wrong checksum is :class:`Malformed`.

Only single-file cabinets are accepted (one folder, one file, not part of a spanned set): that is
what ``symstore /compress``, ``makecab`` and ``gcab`` produce for a symbol file, and anything else
cannot be the one object a key names.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import lzma
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import IO, BinaryIO, Protocol, TypeVar

import zstandard

from symbol_proxy.magic import Container, sniff

__all__ = [
    "BLOCK",
    "CABEXTRACT_TIMEOUT",
    "MAX_CAB_SIZE",
    "Malformed",
    "StoredBlocks",
    "StoredCab",
    "StreamUnpacker",
    "TooLarge",
    "decompress_file",
    "stored_cab",
    "unpack",
    "write_cab",
]

BLOCK = 1 << 16
"""Largest piece of input read, or of output produced, in one step (64 KiB)."""

CAB_BLOCK = 1 << 15
"""Uncompressed bytes per CFDATA block: MSZIP's frame size and its history window (32 KiB)."""

MAX_CAB_SIZE = 0xFFFF * CAB_BLOCK
"""Largest file a single-folder CAB can hold: a folder counts its CFDATA blocks in 16 bits and
each holds at most 32 KiB, so the limit is 2 GiB - 32 KiB (the "about 2 GB" of the spec)."""

CABEXTRACT_TIMEOUT = 30 * 60.0
"""Seconds ``cabextract`` may take for one LZX/Quantum cabinet before it is killed."""

_SNIFF_BYTES = 64


class Malformed(ValueError):
    """The input is not a valid container of a supported kind, or is damaged or truncated."""


class TooLarge(Malformed):
    """The unpacked file would exceed the size limit (or, for a CAB, the format's limit)."""


def decompress_file(src: Path, dst: Path, *, max_size: int) -> str:
    """Unpack the container in ``src`` into ``dst`` and return the inner file's name.

    The name is the one stored in a zip or CAB (as stored: it may contain directories); it is ""
    for gzip, zstd and zlib. The container kind is sniffed from the first bytes. No more than
    ``max_size`` bytes are ever written. Bad input raises :class:`Malformed` (:class:`TooLarge` for
    too much output); local I/O errors propagate unchanged. On any failure ``dst`` is removed.
    """
    with open(src, "rb") as fin, _removed_on_failure(dst) as fout:
        return unpack(fin, fout, max_size=max_size, src_path=src)


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for writing; deleted again if the block fails (also on cancellation)."""
    try:
        with open(path, "wb") as handle:
            yield handle
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def unpack(src: BinaryIO, dst: IO[bytes], *, max_size: int, src_path: Path | None = None) -> str:
    """Unpack the container read from ``src`` (seekable, at offset 0) into ``dst``.

    The file-object form of :func:`decompress_file`: ``dst`` keeps whatever was written before an
    error (never more than ``max_size`` bytes). Errors of the output (a full disk) propagate as
    they are; only faults of the input become :class:`Malformed`. ``src_path`` names the file
    behind ``src`` if there is one; ``cabextract`` reads it for LZX/Quantum cabinets (otherwise
    ``src`` is spooled to a temporary file first).
    """
    head = src.read(_SNIFF_BYTES)
    src.seek(0)
    container = sniff(head)
    if container is None:
        raise Malformed("not a compressed file or archive")
    sink = _Sink(dst, max_size)
    if container is Container.ZIP:
        return _unzip(src, sink)
    if container is Container.CAB:
        return _uncab(src, sink, src_path)
    return _drive(_SEQUENTIAL[container](sink), src)


class _Output(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


class _Sink:
    """The output, with the running total checked before every write."""

    def __init__(self, out: _Output, max_size: int) -> None:
        self.out = out
        self.max_size = max_size
        self.written = 0
        self.size: int | None = None
        """The unpacked file's size, once a header has announced it (CAB)."""

    @property
    def room(self) -> int:
        return self.max_size - self.written

    def expect(self, size: int) -> None:
        """Refuse early when a header already announces more than fits."""
        if size > self.room:
            raise TooLarge(f"the unpacked file ({self.written + size} bytes) exceeds {self.max_size} bytes")

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        if len(data) > self.room:
            raise TooLarge(f"the unpacked file exceeds {self.max_size} bytes")
        self.out.write(data)
        self.written += len(data)


def _read_exact(src: IO[bytes], size: int, what: str) -> bytes:
    data = src.read(size)
    if len(data) != size:
        raise Malformed(f"truncated: {what} ends early")
    return data


# --------------------------------------------------------------------------------------------------
# Parsers that read their input in order, so they can unpack a body while it arrives.
#
# Each one is a generator: it yields how many input bytes it wants next and is sent them (at most
# that many, fewer if fewer are at hand, b"" once the input is over), or it yields 0 after writing
# output, so whoever drives it may pause there. ``_drive`` feeds one from a file (``unpack``);
# ``StreamUnpacker`` feeds it the chunks of a body as they come, and pauses it once enough output
# is out or the input at hand is used up. One parser per format serves both.

_T = TypeVar("_T")
_Parser = Generator[int, bytes, _T]


def _drive(parser: _Parser[_T], src: IO[bytes]) -> _T:
    try:
        wanted = next(parser)
        while True:
            wanted = parser.send(src.read(wanted) if wanted else b"")
    except StopIteration as stop:
        result: _T = stop.value
        return result


def _exact(size: int, what: str) -> _Parser[bytes]:
    """Exactly ``size`` input bytes; :class:`Malformed` if the input ends before."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        data = yield left
        if not data:
            raise Malformed(f"truncated: {what} ends early")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)


def _exact_or_end(size: int, what: str) -> _Parser[bytes]:
    """Exactly ``size`` input bytes, or b"" when the input is already over."""
    first = yield size
    if not first or len(first) == size:
        return first
    return first + (yield from _exact(size - len(first), what))


def _skip_input(size: int, what: str) -> _Parser[None]:
    while size > 0:
        size -= len((yield from _exact(min(size, BLOCK), what)))


_SEQUENTIAL: dict[Container, Callable[[_Sink], _Parser[str]]] = {
    Container.GZIP: lambda sink: _inflate(sink, wbits=16 + zlib.MAX_WBITS, multi_member=True),
    Container.ZLIB: lambda sink: _inflate(sink, wbits=zlib.MAX_WBITS, multi_member=False),
    Container.ZSTD: lambda sink: _unzstd(sink),
}
"""The formats whose parser reads front to back whatever the file holds."""


class _Pieces(list[bytes]):
    def write(self, data: bytes | memoryview, /) -> None:
        self.append(bytes(data))


class StreamUnpacker:
    """Unpacks a container while its body arrives: chunks go in (:meth:`feed`, :meth:`end`), the
    unpacked bytes come out (:meth:`read`), and neither side is ever held whole.

    Memory is bounded by the chunk being fed and the ``limit`` of one :meth:`read` (plus a block of
    the format). The checks are those of :func:`unpack`, output counted against ``max_size``;
    :meth:`read` raises :class:`Malformed` (:class:`TooLarge`) as soon as it sees the fault, and a
    truncated body once :meth:`end` said no more input comes. Not thread-safe: one caller at a time
    (the proxy calls :meth:`read` in an executor, one call after the other).
    """

    def __init__(self, parser: Callable[[_Sink], _Parser[str]], *, max_size: int) -> None:
        self._out = _Pieces()
        self._sink = _Sink(self._out, max_size)
        self._parser = parser(self._sink)
        self._chunk = b""
        self._offset = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._ended = False
        self.received = 0
        """Input bytes fed so far."""
        self.done = False
        """The container ended (every byte of the file is out)."""
        self._wanted = next(self._parser)

    @classmethod
    def for_head(cls, head: bytes, *, max_size: int) -> StreamUnpacker | None:
        """An unpacker for the body starting with ``head`` (its first 64 bytes or more), or
        ``None`` when that container can only be unpacked whole (:func:`unpack`): an LZX or Quantum
        cabinet or one whose data does not follow its headers, a zip entry that is neither stored nor
        deflated (or stored without its size up front)."""
        container = sniff(head)
        if container in _SEQUENTIAL:
            return cls(_SEQUENTIAL[container], max_size=max_size)
        if container is Container.CAB and _cab_in_order(head):
            return cls(_uncab_in_order, max_size=max_size)
        if container is Container.ZIP and _zip_in_order(head):
            return cls(_unzip_in_order, max_size=max_size)
        return None

    @property
    def size(self) -> int | None:
        """The unpacked file's size once a header has announced it (a CAB's), else ``None``."""
        return self._sink.size

    @property
    def written(self) -> int:
        return self._sink.written

    def feed(self, data: bytes) -> None:
        """Queue the next chunk of the body (counted in :attr:`received`). Bytes after the end of
        the container are counted but not kept, as :func:`unpack` ignores them."""
        if self._ended:
            raise ValueError("feed() after end()")
        self.received += len(data)
        if data and not self.done:
            self._pending.append(data)

    def end(self) -> None:
        """No more input: the next :meth:`read` finishes the file or finds it truncated."""
        self._ended = True

    def _take(self, wanted: int) -> bytes:
        while self._offset >= len(self._chunk):
            if not self._pending:
                return b""
            self._chunk, self._offset = self._pending.popleft(), 0
        if self._offset == 0 and len(self._chunk) <= wanted:
            data = self._chunk
        else:
            data = self._chunk[self._offset : self._offset + wanted]
        self._offset += len(data)
        return data

    def read(self, limit: int = 1 << 20) -> bytes:
        """Unpacked bytes: at least ``limit`` of them unless the input at hand runs out first;
        b"" once the file is complete, or when more input is needed."""
        start = self._sink.written
        while not self.done and self._sink.written - start < limit:
            data = b""
            if self._wanted:
                data = self._take(self._wanted)
                if not data and not self._ended:
                    break  # wait for the next chunk
            try:
                self._wanted = self._parser.send(data)
            except StopIteration:
                self.done = True
        out = b"".join(self._out)
        self._out.clear()
        return out


# --------------------------------------------------------------------------------------------------
# gzip and zlib


def _inflate(sink: _Sink, *, wbits: int, multi_member: bool) -> _Parser[str]:
    """Inflate a zlib stream, or a series of gzip members (NUL padding between/after is skipped)."""
    inflater = zlib.decompressobj(wbits)
    pending = b""
    while True:
        if not pending:
            pending = yield BLOCK
        try:
            if pending:
                # Capping the output keeps memory flat however well the input compresses.
                out = inflater.decompress(pending, BLOCK)
            else:
                # The input is used up: what zlib still holds is less than one match (258 bytes).
                out = inflater.flush()
                if not inflater.eof:
                    raise Malformed("truncated: the compressed stream ends early")
        except zlib.error as exc:
            raise Malformed(f"corrupt deflate stream: {exc}") from None
        if out:
            sink.write(out)
            yield 0
        pending = inflater.unconsumed_tail
        if not inflater.eof:
            continue
        rest = inflater.unused_data
        if not multi_member:
            if rest or (yield 1):
                raise Malformed("trailing data after the zlib stream")
            return ""
        rest = yield from _skip_nul_padding(rest)
        if not rest:
            return ""
        inflater = zlib.decompressobj(wbits)  # the next gzip member
        pending = rest


def _skip_nul_padding(rest: bytes) -> _Parser[bytes]:
    """What follows a gzip member once NUL padding is skipped ("" at the end of the input)."""
    while True:
        rest = rest.lstrip(b"\0")
        if rest:
            return rest
        rest = yield BLOCK
        if not rest:
            return b""


# --------------------------------------------------------------------------------------------------
# zstd
#
# The frames are walked here (RFC 8878 §3.1) and fed to the decoder one block at a time. That keeps
# each decoder call at most one block (≤ 128 KiB) of output, and it tells a complete input from a
# truncated one: the streaming readers of the ``zstandard`` package stop silently at a cut. The
# decoder's own memory is bounded by libzstd's default window limit (128 MiB; 8 MiB or less for
# every standard compression level).

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_ZSTD_BLOCK_MAX = 128 * 1024
_ZSTD_RLE = 1
_ZSTD_RESERVED = 3


def _unzstd(sink: _Sink) -> _Parser[str]:
    frames = 0
    while True:
        first = yield from _exact_or_end(4, "zstd frame magic")
        if not first:
            if frames == 0:
                raise Malformed("empty zstd file")
            return ""
        magic = int.from_bytes(first, "little")
        if magic in _ZSTD_SKIPPABLE:
            (size,) = struct.unpack("<I", (yield from _exact(4, "zstd skippable frame")))
            yield from _skip_input(size, "zstd skippable frame")
        elif magic == _ZSTD_MAGIC:
            yield from _unzstd_frame(sink, first)
            frames += 1
        else:
            raise Malformed("not a zstd frame")


def _unzstd_frame(sink: _Sink, magic: bytes) -> _Parser[None]:
    decoder = zstandard.ZstdDecompressor().decompressobj()

    def feed(data: bytes) -> None:
        try:
            sink.write(decoder.decompress(data))
        except zstandard.ZstdError as exc:
            raise Malformed(f"corrupt zstd frame: {exc}") from None

    descriptor = yield from _exact(1, "zstd frame header")
    fhd = descriptor[0]
    if fhd & 0x08:
        raise Malformed("zstd frame header has its reserved bit set")
    single_segment = bool(fhd & 0x20)
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
    header_size = (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 3] + fcs_size
    header_rest = yield from _exact(header_size, "zstd frame header")
    if fcs_size:
        content_size = int.from_bytes(header_rest[-fcs_size:], "little") + (256 if fcs_size == 2 else 0)
        sink.expect(content_size)
    feed(magic + descriptor + header_rest)
    while True:
        block_header = yield from _exact(3, "zstd block header")
        value = int.from_bytes(block_header, "little")
        last, kind, size = value & 1, (value >> 1) & 3, value >> 3
        if kind == _ZSTD_RESERVED or size > _ZSTD_BLOCK_MAX:
            raise Malformed("corrupt zstd block header")
        feed(block_header + (yield from _exact(1 if kind == _ZSTD_RLE else size, "zstd block")))
        yield 0
        if last:
            break
    if fhd & 0x04:
        feed((yield from _exact(4, "zstd content checksum")))
    if not decoder.eof:
        raise Malformed("corrupt zstd frame: the decoder did not reach its end")


def _skip(src: IO[bytes], size: int, what: str) -> None:
    while size > 0:
        size -= len(_read_exact(src, min(size, BLOCK), what))


# --------------------------------------------------------------------------------------------------
# zip

_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, zlib.error,
               lzma.LZMAError, EOFError, ValueError, OSError)  # fmt: skip
"""What ``zipfile`` raises for damaged archives (OSError: bz2 data; RuntimeError: encryption)."""


def _unzip(src: BinaryIO, sink: _Sink) -> str:
    try:
        archive = zipfile.ZipFile(src)
    except _ZIP_ERRORS as exc:
        raise Malformed(f"corrupt zip archive: {exc}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) != 1:
            raise Malformed(f"a zip archive must hold exactly one entry, this one has {len(entries)}")
        (entry,) = entries
        if entry.is_dir():
            raise Malformed("the only entry of the zip archive is a directory")
        sink.expect(entry.file_size)
        try:
            member = archive.open(entry)
        except _ZIP_ERRORS as exc:
            raise Malformed(f"corrupt zip archive: {exc}") from None
        with member:
            while True:
                try:
                    # Reads are capped: ZipExtFile inflates at most BLOCK bytes per call.
                    chunk = member.read(BLOCK)
                except _ZIP_ERRORS as exc:
                    raise Malformed(f"corrupt zip entry: {exc}") from None
                if not chunk:
                    return entry.filename
                sink.write(chunk)


# A zip archive read front to back: the local header of its first entry, the entry, then the central
# directory, which must list that one entry only. Stored and deflated entries, as ``zip`` and
# ``zipfile`` write them; the sizes and CRC come from the local header or from the data descriptor
# after the entry (written when the sizes were not known up front), zip64 sizes from the extra field.

_ZIP_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_ZIP_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_ZIP_CENTRAL_SIGNATURE = b"PK\x01\x02"
_ZIP_END_SIGNATURE = b"PK\x05\x06"
_ZIP64_END_SIGNATURE = b"PK\x06\x06"
_ZIP_DESCRIPTOR_SIGNATURE = b"PK\x07\x08"
_ZIP_ENCRYPTED = 0x0001
_ZIP_DESCRIPTOR = 0x0008
_ZIP_UTF8 = 0x0800
_ZIP_STORED = 0
_ZIP_DEFLATED = 8
_ZIP64_EXTRA = 0x0001
_ZIP64_MARK = 0xFFFFFFFF


def _zip_in_order(head: bytes) -> bool:
    """Whether the zip archive starting with ``head`` can be unpacked front to back: its first entry
    is stored or deflated, not encrypted, and a stored one announces its size."""
    if len(head) < _ZIP_LOCAL.size:
        return False
    _, _, flags, method, *_ = _ZIP_LOCAL.unpack_from(head)
    if flags & _ZIP_ENCRYPTED:
        return False
    return method == _ZIP_DEFLATED or (method == _ZIP_STORED and not flags & _ZIP_DESCRIPTOR)


def _zip64_sizes(extra: bytes, size: int, packed_size: int) -> tuple[int, int]:
    """The sizes from the zip64 extra field, for those the header marks as 0xFFFFFFFF."""
    while len(extra) >= 4:
        tag, length = struct.unpack_from("<HH", extra)
        if tag == _ZIP64_EXTRA:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, 4))
            if size == _ZIP64_MARK and values:
                size = values.pop(0)
            if packed_size == _ZIP64_MARK and values:
                packed_size = values.pop(0)
            break
        extra = extra[4 + length :]
    if _ZIP64_MARK in (size, packed_size):
        raise Malformed("corrupt zip archive: zip64 sizes missing")
    return size, packed_size


def _unzip_in_order(sink: _Sink) -> _Parser[str]:
    header = yield from _exact(_ZIP_LOCAL.size, "zip local header")
    _, _, flags, method, _, _, crc, packed_size, size, name_size, extra_size = _ZIP_LOCAL.unpack(header)
    raw_name = yield from _exact(name_size, "zip entry name")
    extra = yield from _exact(extra_size, "zip extra field")
    if flags & _ZIP_ENCRYPTED or method not in (_ZIP_STORED, _ZIP_DEFLATED):
        raise Malformed("only stored and deflated zip entries are unpacked as they arrive")
    zip64 = _ZIP64_MARK in (size, packed_size)
    if zip64:
        size, packed_size = _zip64_sizes(extra, size, packed_size)
    name = raw_name.decode("utf-8" if flags & _ZIP_UTF8 else "cp437", errors="replace")
    if name.endswith("/"):
        raise Malformed("the only entry of the zip archive is a directory")
    described = bool(flags & _ZIP_DESCRIPTOR)
    if not described:
        sink.expect(size)
        sink.size = size
    digest = 0
    rest = b""
    if method == _ZIP_STORED:
        left = packed_size
        while left > 0:
            data = yield from _exact(min(left, BLOCK), "zip entry")
            digest = zlib.crc32(data, digest)
            sink.write(data)
            yield 0
            left -= len(data)
    else:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        pending = b""
        while not inflater.eof:
            if not pending:
                pending = yield BLOCK
                if not pending:
                    raise Malformed("truncated: the zip entry ends early")
            try:
                out = inflater.decompress(pending, BLOCK)
            except zlib.error as exc:
                raise Malformed(f"corrupt zip entry: {exc}") from None
            if out:
                digest = zlib.crc32(out, digest)
                sink.write(out)
                yield 0
            pending = inflater.unconsumed_tail
        rest = inflater.unused_data
    if described:
        word, rest = yield from _exact_after(rest, 4, "zip data descriptor")
        if word == _ZIP_DESCRIPTOR_SIGNATURE:
            word, rest = yield from _exact_after(rest, 4, "zip data descriptor")
        (crc,) = struct.unpack("<I", word)
        sizes, rest = yield from _exact_after(rest, 16 if zip64 else 8, "zip data descriptor")
        size = struct.unpack("<QQ" if zip64 else "<II", sizes)[1]
    if digest != crc or sink.written != size:
        raise Malformed("corrupt zip entry: its CRC or size does not match")
    central, rest = yield from _exact_after(rest, _ZIP_CENTRAL.size, "zip central directory")
    if not central.startswith(_ZIP_CENTRAL_SIGNATURE):
        raise Malformed("a zip archive must hold exactly one entry, its central directory right after it")
    fields = _ZIP_CENTRAL.unpack(central)
    _, rest = yield from _exact_after(rest, sum(fields[10:13]), "zip central directory")
    end, rest = yield from _exact_after(rest, 4, "zip end of central directory")
    if end == _ZIP64_END_SIGNATURE:  # the zip64 record (its size, then that many bytes), its locator
        record_size, rest = yield from _exact_after(rest, 8, "zip64 end record")
        rest = yield from _skip_after(rest, int.from_bytes(record_size, "little") + 20, "zip64 end record")
        end, rest = yield from _exact_after(rest, 4, "zip end of central directory")
    if end != _ZIP_END_SIGNATURE:
        raise Malformed("a zip archive must hold exactly one entry")
    record, rest = yield from _exact_after(rest, 18, "zip end of central directory")
    yield from _skip_after(rest, struct.unpack_from("<H", record, 16)[0], "zip comment")
    return name


def _skip_after(rest: bytes, size: int, what: str) -> _Parser[bytes]:
    """Skip ``size`` bytes of ``rest`` and then the input; what is left of ``rest``."""
    if len(rest) >= size:
        return rest[size:]
    yield from _skip_input(size - len(rest), what)
    return b""


def _exact_after(rest: bytes, size: int, what: str) -> _Parser[tuple[bytes, bytes]]:
    """``size`` bytes from ``rest`` (input read ahead) and then the input; and what is left of ``rest``."""
    if len(rest) >= size:
        return rest[:size], rest[size:]
    return rest + (yield from _exact(size - len(rest), what)), b""


# --------------------------------------------------------------------------------------------------
# CAB: layout of the structures (all little endian, no padding)
#
# CFHEADER  "MSCF", u32 reserved, u32 cbCabinet, u32 reserved, u32 coffFiles, u32 reserved,
#           u8 versionMinor, u8 versionMajor, u16 cFolders, u16 cFiles, u16 flags, u16 setID,
#           u16 iCabinet, then if flags & RESERVE_PRESENT: u16 cbCFHeader, u8 cbCFFolder,
#           u8 cbCFData and cbCFHeader bytes; then if PREV/NEXT_CABINET: two NUL-terminated names each
# CFFOLDER  u32 coffCabStart, u16 cCFData, u16 typeCompress, cbCFFolder reserved bytes
# CFFILE    u32 cbFile, u32 uoffFolderStart, u16 iFolder, u16 date, u16 time, u16 attribs, szName NUL
# CFDATA    u32 csum, u16 cbData, u16 cbUncomp, cbCFData reserved bytes, cbData bytes of data

_CFHEADER = struct.Struct("<4sIIIIIBBHHHHH")
_CFFOLDER = struct.Struct("<IHH")
_CFFILE = struct.Struct("<IIHHHH")
_CFDATA = struct.Struct("<IHH")

_FLAG_PREV_CABINET = 0x0001
_FLAG_NEXT_CABINET = 0x0002
_FLAG_RESERVE_PRESENT = 0x0004

_COMPRESS_NONE = 0
_COMPRESS_MSZIP = 1
_COMPRESS_NAMES = {0: "uncompressed", 1: "MSZIP", 2: "Quantum", 3: "LZX"}

_ATTR_ARCHIVE = 0x20
_ATTR_NAME_IS_UTF = 0x80
_MAX_NAME = 255
"""Longest file name in bytes (CB_MAX_FILENAME is 256 with the terminating NUL)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Cabinet:
    """What the headers of a single-file cabinet say."""

    data_offset: int
    blocks: int
    compression: int
    data_reserve: int
    name: str
    file_size: int
    file_offset: int


def _uncab(src: BinaryIO, sink: _Sink, src_path: Path | None) -> str:
    cab = _read_cab_headers(src)
    sink.expect(cab.file_size)
    kind = cab.compression & 0x000F
    if kind in (_COMPRESS_NONE, _COMPRESS_MSZIP):
        src.seek(cab.data_offset)
        _drive(_decode_folder(sink, cab), src)
    else:
        _cabextract(src, sink, cab, src_path, _COMPRESS_NAMES.get(kind, f"compression type {kind}"))
    return cab.name


def _cfheader(header: bytes) -> tuple[int, int, int]:
    """``cbCabinet``, ``coffFiles`` and ``flags`` of a CFHEADER, once it is checked to describe a
    single-file cabinet we can read."""
    fields = _CFHEADER.unpack(header)
    (signature, _, cb_cabinet, _, coff_files, _, _, major, folders, files, flags, _, _) = fields
    if signature != b"MSCF":
        raise Malformed("not a CAB file")
    if major != 1:
        raise Malformed(f"unsupported CAB version {major}")
    if flags & (_FLAG_PREV_CABINET | _FLAG_NEXT_CABINET):
        raise Malformed("spanned CAB sets are not supported")
    if folders != 1 or files != 1:
        raise Malformed(f"a CAB must hold exactly one file in one folder, this one has {files} in {folders}")
    return cb_cabinet, coff_files, flags


def _cabinet(folder: bytes, data_reserve: int, cffile: bytes, raw_name: bytes) -> _Cabinet:
    data_offset, blocks, compression = _CFFOLDER.unpack(folder)
    file_size, file_offset, folder_index, _, _, attribs = _CFFILE.unpack(cffile)
    if folder_index != 0:
        raise Malformed("the CAB file continues in another cabinet")
    name = raw_name.decode("utf-8" if attribs & _ATTR_NAME_IS_UTF else "latin-1", errors="replace")
    return _Cabinet(data_offset, blocks, compression, data_reserve, name, file_size, file_offset)


def _read_cab_headers(src: BinaryIO) -> _Cabinet:
    cb_cabinet, coff_files, flags = _cfheader(_read_exact(src, _CFHEADER.size, "CAB header"))
    src.seek(0, os.SEEK_END)
    if src.tell() < cb_cabinet:
        raise Malformed("truncated: the CAB file is shorter than its header says")
    src.seek(_CFHEADER.size)
    folder_reserve = data_reserve = 0
    if flags & _FLAG_RESERVE_PRESENT:
        reserves = _read_exact(src, 4, "CAB header reserve sizes")
        header_reserve, folder_reserve, data_reserve = struct.unpack("<HBB", reserves)
        _skip(src, header_reserve, "CAB header reserve")
    folder = _read_exact(src, _CFFOLDER.size, "CFFOLDER")
    _skip(src, folder_reserve, "CFFOLDER reserve")
    src.seek(coff_files)
    cffile = _read_exact(src, _CFFILE.size, "CFFILE")
    raw_name, nul, _ = src.read(_MAX_NAME + 1).partition(b"\0")
    if not nul:
        raise Malformed("the CAB file name is not terminated")
    return _cabinet(folder, data_reserve, cffile, raw_name)


def _uncab_in_order(sink: _Sink) -> _Parser[str]:
    """A single-file cabinet read front to back (headers, file entry, data: the order ``makecab``,
    ``gcab`` and :func:`write_cab` write), for an uncompressed or MSZIP folder. The file's size is
    announced (``sink.size``) before its first byte."""
    _, coff_files, flags = _cfheader((yield from _exact(_CFHEADER.size, "CAB header")))
    position = _CFHEADER.size
    folder_reserve = data_reserve = 0
    if flags & _FLAG_RESERVE_PRESENT:
        reserves = yield from _exact(4, "CAB header reserve sizes")
        header_reserve, folder_reserve, data_reserve = struct.unpack("<HBB", reserves)
        yield from _skip_input(header_reserve, "CAB header reserve")
        position += 4 + header_reserve
    folder = yield from _exact(_CFFOLDER.size, "CFFOLDER")
    yield from _skip_input(folder_reserve, "CFFOLDER reserve")
    position += _CFFOLDER.size + folder_reserve
    if coff_files < position:
        raise Malformed("the CAB's file entry overlaps its headers")
    yield from _skip_input(coff_files - position, "CAB headers")
    cffile = yield from _exact(_CFFILE.size, "CFFILE")
    raw_name = b""
    while (byte := (yield from _exact(1, "CAB file name"))) != b"\0":
        raw_name += byte
        if len(raw_name) > _MAX_NAME:
            raise Malformed("the CAB file name is not terminated")
    cab = _cabinet(folder, data_reserve, cffile, raw_name)
    position = coff_files + _CFFILE.size + len(raw_name) + 1
    if cab.data_offset < position:
        raise Malformed("the CAB's data overlaps its file entry")
    if cab.compression & 0x000F not in (_COMPRESS_NONE, _COMPRESS_MSZIP):
        raise Malformed("only uncompressed and MSZIP cabinets are unpacked as they arrive")
    yield from _skip_input(cab.data_offset - position, "CAB headers")
    sink.expect(cab.file_size)
    sink.size = cab.file_size
    yield from _decode_folder(sink, cab)
    return cab.name


def _cab_in_order(head: bytes) -> bool:
    """Whether the cabinet starting with ``head`` can be read front to back (``_uncab_in_order``):
    its folder is uncompressed or MSZIP, and its file entry and data follow the folder entry. A
    cabinet that cannot be told from ``head`` is unpacked whole."""
    if len(head) < _CFHEADER.size + _CFFOLDER.size:
        return False
    coff_files, flags = _CFHEADER.unpack_from(head)[4], _CFHEADER.unpack_from(head)[10]
    folder_at = _CFHEADER.size
    folder_reserve = 0
    if flags & _FLAG_RESERVE_PRESENT:
        if len(head) < folder_at + 4:
            return False
        header_reserve, folder_reserve, _ = struct.unpack_from("<HBB", head, folder_at)
        folder_at += 4 + header_reserve
        if len(head) < folder_at + _CFFOLDER.size:
            return False
    data_offset, _, compression = _CFFOLDER.unpack_from(head, folder_at)
    return (
        compression & 0x000F in (_COMPRESS_NONE, _COMPRESS_MSZIP)
        and coff_files >= folder_at + _CFFOLDER.size + folder_reserve
        and data_offset > coff_files + _CFFILE.size
    )


def _decode_folder(sink: _Sink, cab: _Cabinet) -> _Parser[None]:
    """Decode the CFDATA blocks of an uncompressed or MSZIP folder (read from its start), writing
    the file's byte range."""
    mszip = cab.compression & 0x000F == _COMPRESS_MSZIP
    start, end = cab.file_offset, cab.file_offset + cab.file_size
    position = 0  # offset of the next block in the folder's uncompressed data
    history = b""
    for _ in range(cab.blocks):
        if position >= end:
            break
        header = yield from _exact(_CFDATA.size + cab.data_reserve, "CFDATA header")
        checksum, packed_size, size = _CFDATA.unpack_from(header)
        data = yield from _exact(packed_size, "CFDATA block")
        if checksum and cab_checksum(header[4:8], cab_checksum(data)) != checksum:
            raise Malformed("CAB data block checksum mismatch")
        if mszip:
            block = _inflate_mszip(data, size, history)
            history = (history + block)[-CAB_BLOCK:]
        elif packed_size != size:
            raise Malformed("uncompressed CAB block with different packed and unpacked sizes")
        else:
            block = data
        sink.write(memoryview(block)[max(start - position, 0) : max(end - position, 0)])
        yield 0
        position += size
    if position < end:
        raise Malformed("truncated: the CAB folder holds less data than its file")


def _inflate_mszip(data: bytes, size: int, history: bytes) -> bytes:
    if size > CAB_BLOCK or not data.startswith(b"CK"):
        raise Malformed("corrupt MSZIP block")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS, zdict=history)
    try:
        block = inflater.decompress(memoryview(data)[2:], size + 1)
        if len(block) <= size:
            block += inflater.flush()
    except zlib.error as exc:
        raise Malformed(f"corrupt MSZIP block: {exc}") from None
    if len(block) != size:
        raise Malformed("MSZIP block does not unpack to its stated size")
    return block


def cab_checksum(data: bytes | memoryview, seed: int = 0) -> int:
    """The CFDATA checksum: XOR of the little-endian 32-bit words, the 1-3 left-over bytes packed
    big-endian into one more word. A block's ``csum`` is this over its data, then over its
    ``cbData`` and ``cbUncomp`` fields with the first result as seed."""
    whole = len(data) - len(data) % 4
    value = int.from_bytes(data[:whole], "little")
    words = whole // 4
    while words > 1:  # fold the upper half of the words onto the lower half
        half = (words + 1) // 2
        value = (value & ((1 << (32 * half)) - 1)) ^ (value >> (32 * half))
        words = half
    tail = int.from_bytes(data[whole:], "big")
    return seed ^ value ^ tail


def _cabextract(src: BinaryIO, sink: _Sink, cab: _Cabinet, src_path: Path | None, kind: str) -> None:
    """Let ``cabextract`` decode an LZX or Quantum folder, reading its output as a stream.

    The program gets the cabinet as an absolute path after ``--`` (no shell), so no file name can be
    taken for an option, and writes the file to a pipe (``-p``): nothing is extracted to disk under a
    name taken from the cabinet. Its output must be exactly the size the CFFILE header declares (that
    size was checked against ``max_size`` before the program started).
    """
    program = shutil.which("cabextract")
    if program is None:
        raise Malformed(f"{kind} CAB not supported (cabextract is not installed)")
    with tempfile.TemporaryDirectory(prefix="cab-") as scratch:
        if src_path is None:
            src_path = Path(scratch) / "input.cab"
            src.seek(0)
            with open(src_path, "wb") as spool:
                shutil.copyfileobj(src, spool, BLOCK)
        _run_cabextract([program, "-q", "-p", "--", os.fspath(src_path.absolute())], sink, cab.file_size)


def _run_cabextract(command: list[str], sink: _Sink, expected: int) -> None:
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        # A watchdog rather than a deadline check between reads: a stalled process writes nothing.
        watchdog = threading.Timer(CABEXTRACT_TIMEOUT, process.kill)
        watchdog.start()
        try:
            assert process.stdout is not None
            received = 0
            while chunk := process.stdout.read(BLOCK):
                received += len(chunk)
                if received > expected:
                    raise Malformed("cabextract produced more data than the cabinet declares")
                sink.write(chunk)
            status = process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if status != 0:
            errors.seek(0)
            message = errors.read(1000).decode(errors="replace").strip() or "killed or timed out"
            raise Malformed(f"cabextract failed ({status}): {message}")
    if received != expected:
        raise Malformed(f"cabextract produced {received} bytes, the cabinet declares {expected}")


# --------------------------------------------------------------------------------------------------
# CAB writer


def _cab_name(name: str) -> tuple[bytes, int]:
    """The CFFILE name bytes and attributes for ``name``; ``ValueError`` for one a CAB cannot hold."""
    encoded = name.encode()
    if not name or len(encoded) > _MAX_NAME or any(c in name for c in "\0/\\"):
        raise ValueError(f"not a file name a CAB can hold: {name!r}")
    return encoded, _ATTR_ARCHIVE | (0 if name.isascii() else _ATTR_NAME_IS_UTF)


def _cab_headers(total: int, blocks: int, compression: int, size: int, name: str, mtime: float) -> bytes:
    """CFHEADER, the one CFFOLDER and the one CFFILE of a single-file cabinet."""
    encoded, attribs = _cab_name(name)
    date, clock = _dos_datetime(mtime)
    files_offset = _CFHEADER.size + _CFFOLDER.size
    data_offset = files_offset + _CFFILE.size + len(encoded) + 1
    return (
        _CFHEADER.pack(b"MSCF", 0, total, 0, files_offset, 0, 3, 1, 1, 1, 0, 0, 0)
        + _CFFOLDER.pack(data_offset, blocks, compression)
        + _CFFILE.pack(size, 0, 0, date, clock, attribs)
        + encoded
        + b"\0"
    )


def write_cab(src: Path, dst: Path, name: str, *, level: int = 6) -> None:
    """Write ``dst``: a single-file MSZIP cabinet holding ``src`` under ``name``.

    The output is what ``makecab``/``symstore /compress`` would serve as ``foo.pd_``: one folder of
    32 KiB CFDATA blocks, each ``CK`` + a raw deflate stream that may refer back to the previous
    block, with checksums; the CFFILE carries the modification time (UTC) and the archive attribute.
    Raises :class:`TooLarge` above :data:`MAX_CAB_SIZE` and ``ValueError`` for a name a CAB cannot
    hold (empty, a path, a NUL, longer than 255 bytes). On failure ``dst`` is removed.
    """
    header_size = len(_cab_headers(0, 0, _COMPRESS_MSZIP, 0, name, 0.0))  # checks the name too
    with open(src, "rb") as fin:
        stat = os.fstat(fin.fileno())
        if stat.st_size > MAX_CAB_SIZE:
            raise TooLarge(f"{stat.st_size} bytes do not fit in a CAB (at most {MAX_CAB_SIZE})")
        with _removed_on_failure(dst) as fout:
            fout.write(bytes(header_size))  # the headers are written last, once the sizes are known
            size, blocks = _write_mszip_blocks(fin, fout, level)
            total = fout.tell()
            fout.seek(0)
            fout.write(_cab_headers(total, blocks, _COMPRESS_MSZIP, size, name, stat.st_mtime))


def _write_mszip_blocks(fin: BinaryIO, fout: BinaryIO, level: int) -> tuple[int, int]:
    size = blocks = 0
    history = b""
    while block := _read_full(fin, CAB_BLOCK):
        size += len(block)
        if size > MAX_CAB_SIZE:
            raise TooLarge(f"the file grew beyond what a CAB can hold ({MAX_CAB_SIZE} bytes)")
        deflater = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=history)
        data = b"CK" + deflater.compress(block) + deflater.flush()
        fout.write(_cfdata(data, len(block)))
        fout.write(data)
        history = block
        blocks += 1
    return size, blocks


def _cfdata(data: bytes | memoryview, uncompressed: int) -> bytes:
    sizes = struct.pack("<HH", len(data), uncompressed)
    return struct.pack("<I", cab_checksum(sizes, cab_checksum(data))) + sizes


def _stored_header(size: int) -> bytes:
    return _CFDATA.pack(0, size, size)


_FULL_STORED_HEADER = _stored_header(CAB_BLOCK)


# --------------------------------------------------------------------------------------------------
# Stored cabinets: every size is known from the file's size, so the first byte can go out at once.


@dataclasses.dataclass(frozen=True, slots=True)
class StoredCab:
    """A single-file cabinet whose blocks are stored uncompressed (``typeCompress`` 0).

    Its headers and total size follow from the file's size alone, so a server can send the
    headers before it has read a byte of the file and stream the blocks as the file arrives: the
    first byte never waits for compression, and nothing has to be built or kept beforehand. The
    price is bandwidth: 8 bytes per 32 KiB block more than the plain file, where MSZIP would save
    what deflate saves. Every CAB reader supports stored blocks (``expand``, SymSrv, cabextract).
    """

    header: bytes
    size: int
    """Total bytes of the cabinet."""
    file_size: int


def stored_cab(file_size: int, name: str, mtime: float) -> StoredCab:
    """The cabinet holding ``file_size`` bytes as ``name``; :class:`TooLarge`, ``ValueError`` as for
    :func:`write_cab`."""
    if file_size > MAX_CAB_SIZE:
        raise TooLarge(f"{file_size} bytes do not fit in a CAB (at most {MAX_CAB_SIZE})")
    blocks = -(-file_size // CAB_BLOCK)
    header_size = len(_cab_headers(0, 0, _COMPRESS_NONE, 0, name, mtime))
    total = header_size + blocks * _CFDATA.size + file_size
    return StoredCab(_cab_headers(total, blocks, _COMPRESS_NONE, file_size, name, mtime), total, file_size)


class StoredBlocks:
    """Frames a file's bytes, fed in pieces of any size, into the CFDATA blocks of a :class:`StoredCab`.

    Stored blocks carry no checksum (``csum`` 0, which the format defines as "not computed"):
    computing it in Python would cost more than everything else the proxy does per byte, and the
    bytes come from a verified cached file or download.
    """

    def __init__(self, file_size: int) -> None:
        self._left = file_size
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """The complete blocks that ``data`` finishes (possibly none)."""
        if len(data) > self._left:
            raise Malformed("more bytes than the cabinet announced")
        self._left -= len(data)
        view = memoryview(data)
        out: list[bytes | memoryview] = []
        if self._pending:
            take = view[: CAB_BLOCK - len(self._pending)]
            self._pending += take
            view = view[len(take) :]
            if len(self._pending) < CAB_BLOCK and (self._left or view):
                return b""
            out += (_stored_header(len(self._pending)), self._pending)
            self._pending = b""
        while len(view) >= CAB_BLOCK:
            out += (_FULL_STORED_HEADER, view[:CAB_BLOCK])
            view = view[CAB_BLOCK:]
        if view:
            if self._left:
                self._pending = bytes(view)
            else:
                out += (_stored_header(len(view)), view)
        return b"".join(out)

    @property
    def complete(self) -> bool:
        return self._left == 0 and not self._pending


def _read_full(src: IO[bytes], size: int) -> bytes:
    """Exactly ``size`` bytes, fewer only at the end of the input (MSZIP blocks must be full)."""
    data = src.read(size)
    while data and len(data) < size:
        more = src.read(size - len(data))
        if not more:
            break
        data += more
    return data


def _dos_datetime(mtime: float) -> tuple[int, int]:
    """The FAT date and time fields for ``mtime`` (UTC), clamped to what they can express."""
    moment = time.gmtime(mtime)
    if moment.tm_year < 1980:
        return (1 << 5) | 1, 0
    if moment.tm_year > 2107:
        return (127 << 9) | (12 << 5) | 31, (23 << 11) | (59 << 5) | 29
    date = ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    clock = (moment.tm_hour << 11) | (moment.tm_min << 5) | (min(moment.tm_sec, 59) // 2)
    return date, clock

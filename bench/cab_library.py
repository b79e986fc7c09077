"""Our CAB reader and writer (``symbol_proxy.compression``) against ``cabarchive`` from PyPI.

    python -m venv /tmp/cab && /tmp/cab/bin/pip install cabarchive
    PYTHONPATH=/tmp/cab/lib/python3.11/site-packages .venv/bin/python bench/cab_library.py [--mib 64]

``cabarchive`` is not a dependency of the project; this script only measures it. For a generated
file of ``--mib`` MiB (half random-looking, half repetitive, like a PDB), it packs and unpacks the
file with each implementation and prints, as Markdown: wall time, peak Python heap (tracemalloc, which
sees every ``bytes`` object either side allocates) and output size; and it checks that each side
reads the other's cabinets and that ``cabextract`` (libmspack) accepts both.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "sidecar"))

from symbol_proxy import compression  # noqa: E402

try:
    import cabarchive  # type: ignore[import-not-found]
except ImportError:
    sys.exit("cabarchive is not importable: see the usage in this file's docstring")

MiB = 1024 * 1024


def make_input(path: Path, mib: int) -> None:
    with open(path, "wb") as out:
        for index in range(mib):
            if index % 2:
                out.write(hashlib.sha256(index.to_bytes(4, "big")).digest() * (MiB // 32))
            else:
                out.write(
                    b"".join(hashlib.sha256(f"{index}-{n}".encode()).digest() for n in range(MiB // 32))
                )


def measure(fn: Callable[[], None]) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        root = Path(workdir)
        source = root / "file.pdb"
        make_input(source, args.mib)
        expected = source.read_bytes()
        ours_cab, theirs_cab = root / "ours.pd_", root / "theirs.pd_"

        def ours_write() -> None:
            compression.write_cab(source, ours_cab, "file.pdb")

        def theirs_write() -> None:
            archive = cabarchive.CabArchive()
            archive["file.pdb"] = cabarchive.CabFile(source.read_bytes())
            theirs_cab.write_bytes(archive.save(compress=True))

        def ours_read(cab: Path) -> Callable[[], None]:
            def run() -> None:
                with open(cab, "rb") as src, open(root / "out-ours", "wb") as dst:
                    compression.unpack(src, dst, max_size=4 << 30, src_path=cab)

            return run

        def theirs_read(cab: Path) -> Callable[[], None]:
            def run() -> None:
                archive = cabarchive.CabArchive(cab.read_bytes())
                (root / "out-theirs").write_bytes(archive["file.pdb"].buf)

            return run

        rows = []
        for label, write, read, cab in (
            ("ours (compression.py)", ours_write, ours_read, ours_cab),
            (f"cabarchive {cabarchive.__version__ if hasattr(cabarchive, '__version__') else ''}".strip(),
             theirs_write, theirs_read, theirs_cab),
        ):  # fmt: skip
            write_time, write_peak = measure(write)
            read_time, read_peak = measure(read(cab))
            rows.append((label, write_time, write_peak, cab.stat().st_size, read_time, read_peak))

        checks = []
        ours_read(theirs_cab)()
        checks.append(("ours reads cabarchive's cabinet", (root / "out-ours").read_bytes() == expected))
        theirs_read(ours_cab)()
        checks.append(("cabarchive reads our cabinet", (root / "out-theirs").read_bytes() == expected))
        if shutil.which("cabextract"):
            for cab in (ours_cab, theirs_cab):
                result = subprocess.run(["cabextract", "-t", str(cab)], capture_output=True, check=False)
                checks.append((f"cabextract -t {cab.name}", result.returncode == 0))

    print(f"CAB of a {args.mib} MiB file, one run each:\n")
    print(
        "| implementation | pack (s) | pack peak heap (MiB) | .pd_ size (MiB) | unpack (s) "
        "| unpack peak heap (MiB) |"
    )
    print("|---|---|---|---|---|---|")
    for label, wt, wp, size, rt, rp in rows:
        print(f"| {label} | {wt:.2f} | {wp / MiB:.1f} | {size / MiB:.1f} | {rt:.2f} | {rp / MiB:.1f} |")
    print()
    for what, ok in checks:
        print(f"- {what}: {'ok' if ok else 'FAILED'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``symbol-publish DIR``: scan a build's debug files and publish them (docs/publish-cli.md).

Three targets, one scan:

* ``--dry-run``: print the keys (a table, or ``--format json``);
* ``--store DIR --layout symstore``: write the files into a local store, as ``symstore.exe add``;
* ``--server URL --request NAME``: publish into a Symbol Service request (ours or Azure DevOps').
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from symbol_proxy.config import Layout, LayoutType
from symbol_publish import identities, plans, progress, scanning, state
from symbol_publish.identities import Identity
from symbol_publish.publishing import DEFAULT_BLOCK_THRESHOLD

__all__ = ["ExitCode", "main"]


class ExitCode(enum.IntEnum):
    """Documented in docs/publish-cli.md; scripts may rely on them."""

    OK = 0
    USAGE = 2
    """Bad arguments (argparse's own code), a missing token variable."""
    SKIPPED = 3
    """Everything publishable was published, but some files were skipped (listed on stderr)."""
    NOTHING_TO_PUBLISH = 4
    REQUEST_EXISTS = 5
    """The request name holds another publish (without ``--append``), or it is sealed, or an entry
    exists there with other content."""
    AUTH = 6
    """401/403: no token, an unknown token, or one without ``vso.symbols_write``."""
    SERVER_ERROR = 7
    """5xx or the network after retries, another refusal, or the local store could not be written.
    Running the same command again finishes the same request."""


DEFAULT_TOKEN_ENV = "SYMBOL_PUBLISH_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symbol-publish",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("directory", type=Path, help="build output to scan (recursively), or one file")
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="publish only files whose path or name matches (repeatable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files whose path or name matches (repeatable)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be published, publish nothing"
    )
    parser.add_argument("--format", choices=["table", "json"], default="table", help="--dry-run output")
    parser.add_argument(
        "--progress",
        choices=["auto", "always", "never"],
        default="auto",
        help="progress bar on stderr: auto = only in a terminal",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="files written or uploaded at once")
    local = parser.add_argument_group("local store")
    local.add_argument("--store", type=Path, metavar="DIR", help="write into this directory")
    local.add_argument(
        "--layout",
        choices=[t.value for t in LayoutType],
        default="symstore",
        help="the store's layout, as the proxy's sources name it (default: symstore)",
    )
    remote = parser.add_argument_group("Symbol Service")
    remote.add_argument(
        "--server",
        metavar="URL",
        help="organization URL, e.g. https://artifacts.dev.azure.com/ORG or http://host:8090/ORG",
    )
    remote.add_argument("--request", metavar="NAME", help="symbol request name (unique per organization)")
    remote.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        metavar="VAR",
        help=f"environment variable holding the personal access token (default {DEFAULT_TOKEN_ENV})",
    )
    remote.add_argument("--expiration-days", type=int, metavar="N", help="the request expires after N days")
    remote.add_argument("--append", action="store_true", help="add to an existing, unsealed request")
    remote.add_argument("--no-seal", dest="seal", action="store_false", help="leave the request open")
    remote.add_argument(
        "--batch-size", type=int, default=100, help="debug entries per POST (service limit 1000)"
    )
    remote.add_argument(
        "--block-threshold",
        type=_size,
        default=DEFAULT_BLOCK_THRESHOLD,
        metavar="SIZE",
        help="upload files larger than this in 2 MiB blocks, each retried on its own and resumable "
        "(bytes, or with K/M/G; default 64M)",
    )
    state = parser.add_argument_group("state kept between runs")
    state.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="scan and hash cache, block-upload journal (default $SYMBOL_PUBLISH_STATE_DIR, "
        "else $XDG_CACHE_HOME/symbol-publish, else ~/.cache/symbol-publish)",
    )
    state.add_argument("--no-state", action="store_true", help="neither read nor write the state directory")
    return parser


def _size(text: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = text[:-1], text[-1:].upper()
    if unit not in units or unit == "":
        number, unit = text, ""
    try:
        value = int(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a size: {text!r} (bytes, or a number with K, M or G)"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("a size is at least 1 byte")
    return value


def _report_skipped(skipped: Sequence[plans.Skipped]) -> None:
    for item in skipped:
        print(f"symbol-publish: skipped {item.relative}: {item.category}: {item.reason}", file=sys.stderr)


def _identity_json(identity: Identity) -> dict[str, Any]:
    return {
        "format": identity.format.value,
        "kind": identity.kind,
        "arch": identity.arch,
        "debug_id": None if identity.debug_id is None else str(identity.debug_id),
        "code_id": identity.code_id,
        "keys": identities.keys(identity),
    }


def _dry_run(
    plan: plans.Plan, results: Sequence[plans.Scanned | plans.Skipped], target: str, fmt: str
) -> None:
    scanned = [r for r in results if isinstance(r, plans.Scanned)]
    if fmt == "json":
        document = {
            "target": target,
            "files": [
                {"path": f.relative, "size": f.size, "objects": [_identity_json(i) for i in f.identities]}
                for f in scanned
            ],
            "entries": [{"key": e.key, "path": e.file.relative} for e in plan.entries],
            "skipped": [
                {"path": s.relative, "category": s.category, "reason": s.reason} for s in plan.skipped
            ],
        }
        json.dump(document, sys.stdout, indent=1)
        print()
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(plan.entries)} entries from {len(plan.files)} files ({target})")
    for column in ("file", "format", "arch", "debug id", "key"):
        table.add_column(column, overflow="fold")
    for entry in plan.entries:
        identity = entry.identity
        table.add_row(
            entry.file.relative,
            f"{identity.format.value} {identity.kind}",
            identity.arch,
            "" if identity.debug_id is None else str(identity.debug_id),
            entry.key,
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _final_code(skipped: Sequence[plans.Skipped]) -> ExitCode:
    return ExitCode.SKIPPED if skipped else ExitCode.OK


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _run_store(args: argparse.Namespace, plan: plans.Plan) -> ExitCode:
    from symbol_publish import stores

    bar = progress.make(args.progress, "writing", sys.stderr.isatty())
    result = asyncio.run(stores.write_store(args.store, plan, bar, concurrency=args.concurrency))
    skipped = [*plan.skipped, *result.skipped]
    _report_skipped(result.skipped)
    print(
        f"symbol-publish: {len(result.written)} files written to {args.store} ({args.layout} layout, "
        f"{_human(result.written_bytes)}), {len(result.present)} already there, {len(skipped)} skipped"
    )
    if any(s.category == "unreadable" for s in result.skipped):
        return ExitCode.SERVER_ERROR
    return _final_code(skipped)


def _run_service(args: argparse.Namespace, plan: plans.Plan, cache: state.FileCache) -> ExitCode:
    import aiohttp

    from symbol_publish import publishing, service

    token = os.environ.get(args.token_env)
    if not token:
        print(f"symbol-publish: no token: set the environment variable {args.token_env}", file=sys.stderr)
        return ExitCode.USAGE
    options = publishing.Options(
        name=args.request,
        expiration_days=args.expiration_days,
        append=args.append,
        seal=args.seal,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        block_threshold=args.block_threshold,
    )
    bar = progress.make(args.progress, "uploading", sys.stderr.isatty())
    hashing = progress.make(args.progress, "hashing", sys.stderr.isatty())

    async def run() -> publishing.Outcome:
        async with aiohttp.ClientSession() as session:
            client = service.SymbolService(args.server, token, session)
            journal = state.BlockJournal(cache.directory, client.url)
            return await publishing.publish(client, plan, options, bar, hashing, cache, journal)

    try:
        outcome = asyncio.run(run())
    except service.AuthError as exc:
        print(f"symbol-publish: not authorized: {exc}", file=sys.stderr)
        return ExitCode.AUTH
    except service.RequestExists as exc:
        print(f"symbol-publish: {exc}", file=sys.stderr)
        return ExitCode.REQUEST_EXISTS
    except service.ServiceError as exc:
        print(f"symbol-publish: {exc}; run the same command again to finish the request", file=sys.stderr)
        return ExitCode.SERVER_ERROR
    request = outcome.request
    status = "already sealed by an earlier run" if outcome.already_sealed else str(request.get("status"))
    print(
        f"symbol-publish: request {args.request!r} {status}"
        f"{' (resumed)' if outcome.resumed and not outcome.already_sealed else ''}: "
        f"{outcome.entries} entries, {outcome.uploaded_blobs} new blobs "
        f"({_human(outcome.uploaded_bytes)} uploaded), "
        f"{_human(outcome.deduplicated_bytes)} deduplicated, {len(plan.skipped)} files skipped\n"
        f"  {request.get('url', '')}\n"
        f"  {cache.scan_misses} files scanned, {cache.scan_hits} from the cache; "
        f"{outcome.hashed_files} hashed, {outcome.cached_files} from the cache"
        + (
            f"; {outcome.uploaded_blocks} blocks uploaded, {outcome.resumed_blocks} resumed"
            if outcome.uploaded_blocks or outcome.resumed_blocks
            else ""
        )
    )
    return _final_code(plan.skipped)


def _same_content(first: plans.Scanned, second: plans.Scanned) -> bool:
    from symbol_publish import files

    try:
        return files.same_content(first.path, second.path)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store is not None and args.server is not None:
        parser.error("--store and --server are two targets: choose one")
    if args.server is not None and not args.request:
        parser.error("--server needs --request NAME")
    if args.request is not None and args.server is None:
        parser.error("--request needs --server URL")
    if not args.directory.exists():
        parser.error(f"{args.directory} does not exist")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size is 1 to 1000")
    if args.concurrency < 1:
        parser.error("--concurrency is at least 1")

    # Path order decides which of two files claiming one key keeps it, whatever the directory walk does.
    cache = state.FileCache(None if args.no_state else (args.state_dir or state.default_dir()))
    scanned = scanning.scan(args.directory, args.include, args.exclude, cache)
    results = sorted(scanned, key=lambda r: r.relative)
    cache.save()
    keys_of: Callable[[Identity], list[str]]
    if args.store is not None:
        layout = Layout(type=LayoutType(args.layout))
        target = f"store {args.store}, {args.layout} layout"

        def keys_of(identity: Identity) -> list[str]:
            return identities.store_paths(identity, layout)

        plan = plans.plan(
            results,
            keys_of,
            case_insensitive=False,
            same_content=_same_content,
            unplaced=f"the {args.layout} layout has no place for {{format}} files (try --layout native)",
        )
    else:
        target = f"request {args.request} on {args.server}" if args.server else "client keys"
        plan = plans.plan(results, identities.client_keys, same_content=_same_content)

    if args.dry_run:
        _dry_run(plan, results, target, args.format)
        _report_skipped(plan.skipped)
        return int(ExitCode.NOTHING_TO_PUBLISH if not plan.entries else _final_code(plan.skipped))
    _report_skipped(plan.skipped)
    if not plan.entries:
        print(f"symbol-publish: nothing to publish in {args.directory}", file=sys.stderr)
        return int(ExitCode.NOTHING_TO_PUBLISH)
    if args.store is not None:
        return int(_run_store(args, plan))
    if args.server is not None:
        return int(_run_service(args, plan, cache))
    parser.error("nothing to do: give --dry-run, --store DIR or --server URL --request NAME")
    return int(ExitCode.USAGE)  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())

"""``symbol-service``: the publishing service (``serve``), its garbage collector (``gc``) and its small
tools (``hash-token``)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from symbol_proxy.backends import base
from symbol_proxy.config import ConfigError, FilesystemSource, GcsSource, UpstreamSettings
from symbol_service import tokens
from symbol_service.config import MIN_GRACE_PERIOD, ServiceConfig, StoreSource, TokenFile, load_config
from symbol_service.requeststore import RequestStore

log = logging.getLogger("symbol_service")

__all__ = ["main"]


def _hash_token(args: argparse.Namespace) -> int:
    """Read a token from stdin (never from the command line, which ``ps`` shows) and print its hash."""
    if args.new:
        token = tokens.new_token()
        print(token)
    else:
        token = sys.stdin.readline().strip()
    if not token:
        print("symbol-service: no token on stdin (or use --new)", file=sys.stderr)
        return 2
    print(tokens.hash_token(token))
    return 0


def store_backend(source: StoreSource, settings: UpstreamSettings) -> base.ListableBackend:
    """The writable backend of the publish store."""
    if isinstance(source, FilesystemSource):
        from symbol_proxy.backends.filesystem import FilesystemBackend

        Path(source.path).mkdir(parents=True, exist_ok=True)
        return FilesystemBackend(source)
    try:
        if isinstance(source, GcsSource):
            from symbol_proxy.backends.gcs import GcsBackend

            return GcsBackend(source, settings)  # with its own HTTP session, closed with it
        from symbol_proxy.backends.s3 import S3Backend
    except ImportError as exc:
        raise ConfigError(
            f"store: the {source.type} store needs {exc.name}; install symbol-operator[cloud]"
        ) from None
    return S3Backend(source, settings)


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(mounted: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """The namespace of SymbolRequests when ``--namespace`` is not given: ``$POD_NAMESPACE``, the pod's
    own namespace (from its ServiceAccount mount), else ``default``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return mounted.read_text(encoding="utf-8").strip() or "default"
    except OSError:
        return "default"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("botocore", "aiobotocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)  # they log signed headers at DEBUG


def _kube_requests(namespace: str | None, store: str) -> RequestStore | None:
    """The SymbolRequests of ``namespace`` (or the default one), created with ``spec.store`` =
    ``store`` (the publish store's id); ``None`` after reporting a login failure."""
    from symbol_operator.kubeapi import KubeApi, LoginError, load_configuration
    from symbol_service.kuberequests import KubeRequestStore

    try:
        load_configuration()  # fail now, clearly, rather than at the first request
    except LoginError as exc:
        print(f"symbol-service: --requests kubernetes: {exc.message}", file=sys.stderr)
        return None
    api = KubeApi()  # kubeconfig, or the pod's ServiceAccount in a cluster; connects on first use
    requests = KubeRequestStore(api, namespace or default_namespace(), store=store)
    log.info("symbol requests are SymbolRequest resources of namespace %s", requests.namespace)
    return requests


def _gc(args: argparse.Namespace) -> int:
    """One garbage collection of the store (``symbol_service.collecting``); prints what it removed."""
    import asyncio
    import datetime
    import json

    from symbol_proxy.config import parse_duration
    from symbol_service import collecting

    _setup_logging(args.log_level)
    try:
        config: ServiceConfig = load_config(Path(args.config))
        grace = config.gc.grace_period if args.grace is None else parse_duration(args.grace)
        if grace < MIN_GRACE_PERIOD:
            raise ValueError(f"--grace must be at least {MIN_GRACE_PERIOD:g} s (an hour)")
    except (ConfigError, ValueError) as exc:
        print(f"symbol-service: {exc}", file=sys.stderr)
        return 2
    requests = _kube_requests(args.namespace, config.store.id)
    if requests is None:
        return 2
    backend = store_backend(config.store, config.upstream)
    assert isinstance(backend, base.ListableBackend)

    async def run() -> collecting.Collected:
        try:
            return await collecting.collect(
                backend, requests, grace=datetime.timedelta(seconds=grace), dry_run=args.dry_run
            )
        finally:
            await backend.aclose()

    try:
        collected = asyncio.run(run())
    except base.BackendError as exc:
        print(f"symbol-service gc: the store failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(collected)))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from symbol_service.app import create_app
    from symbol_service.requeststore import MemoryRequestStore

    _setup_logging(args.log_level)
    try:
        config: ServiceConfig = load_config(Path(args.config))
        table = TokenFile(Path(config.tokens_file))
    except (ConfigError, ValueError) as exc:
        print(f"symbol-service: {exc}", file=sys.stderr)
        return 2
    requests: RequestStore | None
    if args.requests == "memory":
        log.warning("DEVELOPMENT MODE: symbol requests are kept in this process's memory only")
        requests = MemoryRequestStore()
    else:
        requests = _kube_requests(args.namespace, config.store.id)
        if requests is None:
            return 2
    app = create_app(
        store_backend(config.store, config.upstream),
        requests,
        table,
        limits=config.limits,
        public_url=config.public_url,
    )
    host = args.host or config.listen.host
    port = config.listen.port if args.port is None else args.port
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symbol-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    hashing = commands.add_parser("hash-token", help="print the stored form of a token read from stdin")
    hashing.add_argument("--new", action="store_true", help="make a new random token, print it and its hash")
    hashing.set_defaults(run=_hash_token)
    serve = commands.add_parser("serve", help="run the Symbol Service API")
    serve.add_argument("--config", required=True, help="YAML configuration (docs/publishing.md)")
    serve.add_argument("--host", help="listen address (overrides listen.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides listen.port)")
    serve.add_argument(
        "--requests",
        choices=["kubernetes", "memory"],
        default="kubernetes",
        help="where requests live: SymbolRequest resources (default), or 'memory' for development only",
    )
    serve.add_argument(
        "--namespace",
        help="namespace of the SymbolRequests (default: $POD_NAMESPACE, the pod's own, else 'default')",
    )
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)
    collect = commands.add_parser(
        "gc", help="remove what no SymbolRequest needs from the store (blobs, blocks, unfinished uploads)"
    )
    collect.add_argument("--config", required=True, help="the service's YAML configuration (its store)")
    collect.add_argument(
        "--grace", help="only remove objects older than this (default: gc.grace_period, 24h)"
    )
    collect.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    collect.add_argument(
        "--namespace",
        help="namespace of the SymbolRequests (default: $POD_NAMESPACE, the pod's own, else 'default')",
    )
    collect.add_argument("--log-level", default="info")
    collect.set_defaults(run=_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

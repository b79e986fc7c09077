"""``symbol-proxy``: run the cache proxy, check a configuration, print its schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from symbol_proxy.config import ConfigError, ProxyConfig, load_text, parse_size

__all__ = ["main"]

DEFAULT_CONFIG = """\
# Embedded default: serve a local filesystem store in SymSrv layout, cache under ./symbol-cache.
listen: {host: 127.0.0.1, port: 8080}
cache: {dir: ./symbol-cache, max_size: 2GiB}
sources:
  - id: local
    type: filesystem
    path: ./symbol-store
    layout: {type: symstore}
"""


def _configure_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        formatter: logging.Formatter = _JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Cloud SDKs log signed request headers (access key ids, tokens) at DEBUG: never let them through,
    # whatever the proxy's own level is.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


QUIET_LOGGERS = ("botocore", "aiobotocore", "boto3", "urllib3", "google", "gcloud")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"expected a number of processes from 1 to 64, not {value!r}")
    return count


def _load(path: str | None) -> tuple[ProxyConfig, Path | None]:
    from symbol_proxy import loading

    if path is None:
        config = load_text(DEFAULT_CONFIG)
        for source in config.sources:
            if source.type == "filesystem":
                Path(source.path).mkdir(parents=True, exist_ok=True)
        return config, None
    return loading.read_config(Path(path)), Path(path)


def with_overrides(config: ProxyConfig, args: argparse.Namespace) -> ProxyConfig:
    """The configuration with ``--host``/``--port``/``--probe-port``/``--cache-dir``/
    ``--cache-max-size`` applied. Both groups are restart-only settings, so a reload of the file
    keeps what the flags said."""
    for key, flags in (
        ("listen", ("host", "port", "probe_port")),
        ("cache", ("cache_dir", "cache_max_size")),
    ):
        update = {
            flag.removeprefix("cache_"): getattr(args, flag)
            for flag in flags
            if getattr(args, flag) is not None
        }
        if update:
            config = config.model_copy(update={key: getattr(config, key).model_copy(update=update)})
    return config


def _without_workers(argv: list[str]) -> list[str]:
    """The command line again, for a worker: without ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def _serve(args: argparse.Namespace, argv: list[str]) -> int:
    from symbol_proxy.server import serving
    from symbol_proxy.server.app import create_app

    config, path = _load(args.config)
    config = with_overrides(config, args)
    listen = config.listen
    if args.worker_role is None and args.workers > 1:
        if listen.port == 0:
            raise ConfigError("--workers needs a fixed listen.port (the workers share it)")
        from symbol_proxy.server import workers

        return workers.supervise(_without_workers(argv), args.workers)
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.worker_role is not None:
        from symbol_proxy.server import workers

        workers.die_with_parent()
        if path is None:  # nothing to reload: the SIGHUP the parent passes on must not end it
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        directory = Path(args.worker_dir)
        if args.worker_role == "follower":
            follower = workers.create_follower_app(
                config, config_path=path, owner_socket=directory / workers.OWNER_SOCKET
            )
            asyncio.run(serving.serve(follower, listen.host, listen.port, reuse_port=True))
            return 0
        owner = create_app(config, config_path=path, handle_sighup=path is not None, shared_cache=True)
        workers.add_owner_routes(owner)
        asyncio.run(
            serving.serve(
                owner,
                listen.host,
                listen.port,
                reuse_port=True,
                probe_host=listen.probe_host,
                probe_port=listen.probe_port,
                unix_path=directory / workers.OWNER_SOCKET,
            )
        )
        return 0
    app = create_app(config, config_path=path, handle_sighup=path is not None)
    logging.getLogger(__name__).info(
        "serving %d sources on http://%s:%d (cache %s)",
        len(config.sources),
        config.listen.host,
        config.listen.port,
        config.cache.dir,
    )
    asyncio.run(
        serving.serve(
            app, listen.host, listen.port, probe_host=listen.probe_host, probe_port=listen.probe_port
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="symbol-proxy", description=__doc__)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML/JSON configuration file (default: an embedded local store)")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.add_argument("--probe-port", type=int, help="override listen.probe_port (health and metrics only)")
    serve.add_argument("--cache-dir", help="override cache.dir")
    serve.add_argument("--cache-max-size", type=_size, help="override cache.max_size (e.g. 5GiB)")
    serve.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop; asyncio's supports sendfile for cache hits (see docs/benchmarks.md)",
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="processes serving the port (SO_REUSEPORT) over one shared cache (docs/configuration.md)",
    )
    serve.add_argument("--worker-role", choices=["owner", "follower"], help=argparse.SUPPRESS)
    serve.add_argument("--worker-dir", help=argparse.SUPPRESS)
    check = commands.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config")
    commands.add_parser("schema", help="print the configuration's JSON schema")
    args = parser.parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    try:
        if args.command == "serve":
            return _serve(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "check-config":
            config, _ = _load(args.config)
            print(f"ok: {len(config.sources)} sources")
            return 0
        print(json.dumps(ProxyConfig.model_json_schema(), indent=2))
        return 0
    except ConfigError as exc:
        print(f"symbol-proxy: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

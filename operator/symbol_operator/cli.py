"""``symbol-operator``: run the operator, or print/write/check the CRDs.

::

    symbol-operator run --namespace team-a --namespace team-b   # only these namespaces (Role per ns)
    symbol-operator run --all-namespaces                        # cluster-wide (ClusterRoleBinding)
    symbol-operator crds --write crds                           # same as python -m symbol_operator.crds
    symbol-operator webhook --tls-cert tls.crt --tls-key tls.key --proxy-image IMAGE   # the injector

``run`` is always standalone (one replica, no kopf peering): deploy it with ``replicas: 1`` and
``strategy: Recreate``. Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad flags or a bad
base configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import kopf

from symbol_operator import __version__, crds
from symbol_operator.options import OperatorOptions, load_base_config
from symbol_operator.webhook import serving

__all__ = ["build_parser", "main", "options_from_args", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="symbol-operator", description="Kubernetes operator for symbol sources."
    )
    parser.add_argument("--version", action="version", version=f"symbol-operator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="serve this namespace; repeat for several",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace")
    run.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, including kopf's per-object logs"
    )
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR", help="metrics listen address")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        metavar="PORT",
        help="port of GET /metrics (0: any free port; default 9090)",
    )
    run.add_argument("--no-metrics", action="store_true", help="serve no metrics")
    run.add_argument(
        "--liveness",
        metavar="URL",
        help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz (off by default)",
    )
    run.add_argument(
        "--config-secret",
        default=OperatorOptions.config_secret,
        metavar="NAME",
        help="name of the rendered Secret in each namespace (default %(default)s)",
    )
    run.add_argument(
        "--config-key",
        default=OperatorOptions.config_key,
        metavar="KEY",
        help="key of the configuration in that Secret (default %(default)s)",
    )
    run.add_argument(
        "--base-config",
        type=Path,
        metavar="FILE",
        help="proxy settings (listen, cache, upstream; no sources) for every rendered document",
    )
    run.add_argument(
        "--debounce",
        type=float,
        default=OperatorOptions.debounce,
        metavar="SECONDS",
        help="delay between a change and the reconcile it triggers (default %(default)s)",
    )
    run.add_argument(
        "--publish-config",
        type=Path,
        metavar="FILE",
        help="the publishing service's configuration: reconcile SymbolRequests into its store "
        "(publish sealed ones, withdraw expired and deleted ones; docs/publishing.md)",
    )
    run.add_argument(
        "--publish-source",
        metavar="NAME",
        help="the SymbolSource through which sidecars read the publish store: its publication "
        "annotation changes after each publish, so sidecars drop cached 404s",
    )
    run.add_argument(
        "--request-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often each SymbolRequest is checked for expiry and retried (default %(default)s)",
    )

    definitions = commands.add_parser("crds", help="print, write or check the CustomResourceDefinitions")
    target = definitions.add_mutually_exclusive_group()
    target.add_argument("--write", metavar="DIR", help="write one file per CRD into DIR")
    target.add_argument("--check", metavar="DIR", help="exit 1 if DIR differs from the generated files")

    injector = commands.add_parser("webhook", help="serve the sidecar injection webhook over HTTPS")
    injector.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    serving.add_arguments(injector)
    return parser


def options_from_args(args: argparse.Namespace) -> OperatorOptions:
    return OperatorOptions(
        config_secret=args.config_secret,
        config_key=args.config_key,
        metrics_host=args.metrics_address,
        metrics_port=None if args.no_metrics else args.metrics_port,
        debounce=args.debounce,
        base=load_base_config(args.base_config) if args.base_config else {},
    )


def register_lifecycle(
    config: Path, registry: kopf.OperatorRegistry, *, interval: float, source: str | None = None
) -> None:
    """Add the SymbolRequest handlers, publishing into the store of the service's configuration."""
    from symbol_operator.kubeapi import KubeApi
    from symbol_operator.lifecycle import Lifecycle, register
    from symbol_service.cli import store_backend
    from symbol_service.config import load_config
    from symbol_service.publication import Publisher

    service = load_config(config)
    publisher = Publisher(store_backend(service.store, service.upstream))
    lifecycle = Lifecycle(KubeApi(), publisher, source=source, store=service.store.id)
    register(registry, lifecycle, interval=interval)


def run(
    args: argparse.Namespace,
    options: OperatorOptions,
    *,
    stop_flag: threading.Event | asyncio.Event | None = None,
) -> None:
    """Run the operator until a signal (or ``stop_flag``) stops it."""
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="k8s_obj" if args.log_format == "json" else None,
    )
    if not args.verbose:
        # kopf logs "Handler ... succeeded" for every watched event; the reconciler's own log lines
        # say what changed. Warnings and errors of kopf's object logger still come through.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    from symbol_operator import handlers  # registers the handlers with kopf's default registry

    assert handlers.startup is not None
    if getattr(args, "publish_config", None) is not None:
        register_lifecycle(
            args.publish_config,
            kopf.get_default_registry(),
            interval=args.request_interval,
            source=args.publish_source,
        )
    kopf.run(
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(options=options),
        stop_flag=stop_flag,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "crds":
        return crds.main(
            ["--write", args.write] if args.write else ["--check", args.check] if args.check else []
        )
    if args.command == "webhook":
        logging.basicConfig(
            level=logging.INFO,
            format='{"level": "%(levelname)s", "logger": "%(name)s", "message": "%(message)s"}'
            if args.log_format == "json"
            else "%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            return serving.serve(args)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
    try:
        options = options_from_args(args)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    run(args, options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

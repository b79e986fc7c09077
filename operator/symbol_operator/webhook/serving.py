"""The webhook's HTTPS server: AdmissionReview in, the patch of ``injection`` out.

A small aiohttp application rather than kopf's admission support: it needs no Kubernetes API access
at all (the namespace's opt-in is the webhook configuration's ``namespaceSelector``, which routes such
pods to ``/inject/namespace``), so it runs as its own Deployment with several replicas and pod creation
never waits on the single operator pod.

The serving certificate is read again when its files change (cert-manager renews it in the mounted
Secret): new connections get the new one, and the pod need not restart.

Routes: ``POST /inject/pod`` (pods annotated ``inject: "true"``), ``POST /inject/namespace`` (every
pod of an opted-in namespace unless annotated ``"false"``), ``GET /healthz`` (readiness over TLS).
Anything that is not a Pod CREATE is allowed untouched. A review that cannot be decoded gets 400; an
annotated pod with an unusable annotation is denied with a message naming the annotation.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from symbol_operator.webhook import injection

__all__ = ["CertificateFiles", "add_arguments", "create_app", "review_response", "serve"]

log = logging.getLogger(__name__)
SETTINGS = web.AppKey("settings", injection.Settings)


def review_response(review: Any, mode: injection.Mode, settings: injection.Settings) -> dict[str, Any]:
    """The AdmissionReview answering ``review``; raises ``ValueError`` for a body that is not one."""
    if not isinstance(review, dict) or not isinstance(review.get("request"), dict):
        raise ValueError("not an AdmissionReview: no request")
    request = review["request"]
    uid = request.get("uid")
    if not isinstance(uid, str):
        raise ValueError("not an AdmissionReview: no request.uid")
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    kind = (request.get("kind") or {}).get("kind")
    pod = request.get("object")
    if kind == "Pod" and request.get("operation") == "CREATE" and isinstance(pod, dict):
        name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName")
        where = f"{request.get('namespace')}/{name}"
        try:
            patch = injection.patch_for(pod, mode, settings)
        except injection.InjectionError as exc:
            log.warning("pod %s not admitted: %s", where, exc)
            response = {"uid": uid, "allowed": False, "status": {"code": 400, "message": str(exc)}}
        else:
            if patch:
                log.info("injecting the symbol proxy into pod %s", where)
                response["patchType"] = "JSONPatch"
                response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


def _handler(mode: injection.Mode) -> Any:
    async def handle(request: web.Request) -> web.Response:
        try:
            review = await request.json()
            answer = review_response(review, mode, request.app[SETTINGS])
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(answer)

    return handle


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


CERT_POLL_SECONDS = 30.0
"""How often the certificate files are checked; cert-manager renews well ahead of expiry."""


class CertificateFiles:
    """The serving certificate and key behind one SSL context, loaded again when they change."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.version = self._version()
        self.context.load_cert_chain(cert, key)

    def _version(self) -> tuple[tuple[int, int], ...]:
        # Kubernetes swaps a Secret's files through a symlink, so stat follows it to the new inode.
        return tuple((os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in (self.cert, self.key))

    def reload_if_changed(self) -> bool:
        """Load the files into the same context if they changed; a broken pair keeps the old one."""
        try:
            version = self._version()
            if version == self.version:
                return False
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.error("serving certificate not reloaded, the previous one stays: %s", exc)
            return False
        self.version = version
        log.info("serving certificate reloaded from %s", self.cert)
        return True


def create_app(settings: injection.Settings, certificates: CertificateFiles | None = None) -> web.Application:
    app = web.Application(client_max_size=8 * 1024**2)
    app[SETTINGS] = settings
    if certificates is not None:

        async def watch(app: web.Application) -> AsyncIterator[None]:
            async def poll() -> None:
                while True:
                    await asyncio.sleep(CERT_POLL_SECONDS)
                    certificates.reload_if_changed()

            task = asyncio.create_task(poll())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(watch)
    app.add_routes(
        [
            web.post("/inject/pod", _handler("pod")),
            web.post("/inject/namespace", _handler("namespace")),
            web.get("/healthz", _healthz),
        ]
    )
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = injection.Settings(image="")
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default %(default)s)")
    parser.add_argument("--port", type=int, default=9443, help="HTTPS port (default %(default)s)")
    parser.add_argument("--tls-cert", required=True, metavar="FILE", help="serving certificate (PEM)")
    parser.add_argument("--tls-key", required=True, metavar="FILE", help="its private key (PEM)")
    parser.add_argument("--proxy-image", required=True, metavar="IMAGE", help="image of the sidecar")
    parser.add_argument("--proxy-pull-policy", default=defaults.image_pull_policy, metavar="POLICY")
    parser.add_argument("--proxy-port", type=int, default=defaults.port, metavar="PORT")
    parser.add_argument("--proxy-probe-port", type=int, default=defaults.probe_port, metavar="PORT")
    parser.add_argument("--cache-size", default=defaults.cache_size, metavar="QUANTITY")
    parser.add_argument("--cpu", default=defaults.cpu, metavar="QUANTITY")
    parser.add_argument("--memory", default=defaults.memory, metavar="QUANTITY")
    parser.add_argument("--cpu-limit", default=defaults.cpu_limit, metavar="QUANTITY")
    parser.add_argument("--memory-limit", default=defaults.memory_limit, metavar="QUANTITY")
    parser.add_argument("--config-secret", default=defaults.config_secret, metavar="NAME")
    parser.add_argument("--config-key", default=defaults.config_key, metavar="KEY")


def settings_from_args(args: argparse.Namespace) -> injection.Settings:
    settings = injection.Settings(
        image=args.proxy_image,
        image_pull_policy=args.proxy_pull_policy,
        config_secret=args.config_secret,
        config_key=args.config_key,
        port=args.proxy_port,
        probe_port=args.proxy_probe_port,
        cache_size=args.cache_size,
        cpu=args.cpu,
        memory=args.memory,
        cpu_limit=args.cpu_limit or None,
        memory_limit=args.memory_limit or None,
    )
    # The defaults go through the same checks as annotations: a bad flag fails at start, not per pod.
    injection.patch_for({"metadata": {"annotations": {injection.INJECT: "true"}}}, "pod", settings)
    return settings


def serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    certificates = CertificateFiles(args.tls_cert, args.tls_key)
    log.info("injection webhook on https://%s:%d (sidecar image %s)", args.host, args.port, settings.image)
    web.run_app(
        create_app(settings, certificates),
        host=args.host,
        port=args.port,
        ssl_context=certificates.context,
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )
    return 0

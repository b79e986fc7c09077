"""The proxy's command line: logging never lets cloud SDK debug output (signed headers) through."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

import pytest

from symbol_proxy import cli
from symbol_proxy.config import load_text


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in cli.QUIET_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_logging_keeps_sdk_loggers_quiet(fmt: str) -> None:
    cli._configure_logging("debug", fmt)
    assert logging.getLogger("symbol_proxy.backends.s3").isEnabledFor(logging.DEBUG)
    for name in ("botocore.endpoint", "aiobotocore.endpoint", "urllib3.connectionpool"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name


def serve_args(**flags: object) -> argparse.Namespace:
    return argparse.Namespace(
        **(
            {"host": None, "port": None, "probe_port": None, "cache_dir": None, "cache_max_size": None}
            | flags
        )
    )


def test_flags_override_listen_and_cache_and_keep_the_rest() -> None:
    config = load_text(
        "listen: {host: 0.0.0.0, port: 1}\ncache: {dir: /a, max_size: 1GiB, negative_ttl: 5m}\n"
    )
    changed = cli.with_overrides(config, serve_args(port=2, cache_dir="/b", cache_max_size=3))
    assert (changed.listen.host, changed.listen.port) == ("0.0.0.0", 2)
    assert (changed.cache.dir, changed.cache.max_size, changed.cache.negative_ttl) == ("/b", 3, 300.0)
    assert cli.with_overrides(config, serve_args()) == config


def test_a_bad_cache_size_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--cache-max-size", "lots"])
    assert exited.value.code == 2
    assert "--cache-max-size" in capsys.readouterr().err

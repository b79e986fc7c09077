"""The proxy's command line: logging never lets cloud SDK debug output (signed headers) through."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from symbol_proxy import cli


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

"""The command line without a cluster: flags, their mapping to the operator's options, and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from symbol_operator.cli import build_parser, main, options_from_args
from symbol_operator.options import OperatorOptions
from tests.operator_tests.manifests import REPO


def test_namespaces_can_be_repeated() -> None:
    args = build_parser().parse_args(["run", "--namespace", "a", "-n", "b"])
    assert args.namespaces == ["a", "b"]
    assert not args.all_namespaces


def test_run_needs_exactly_one_scope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as missing:
        build_parser().parse_args(["run"])
    assert missing.value.code == 2
    with pytest.raises(SystemExit) as both:
        build_parser().parse_args(["run", "-A", "--namespace", "a"])
    assert both.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_flags_become_options(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("cache: {dir: /var/cache/symbols}\n", encoding="utf-8")
    args = build_parser().parse_args(
        [
            "run",
            "-A",
            "--metrics-port",
            "9999",
            "--metrics-address",
            "127.0.0.1",
            "--config-secret",
            "cfg",
            "--config-key",
            "c.yaml",
            "--debounce",
            "1.5",
            "--base-config",
            str(base),
            "--log-format",
            "json",
        ]
    )
    options = options_from_args(args)
    assert options == OperatorOptions(
        config_secret="cfg",
        config_key="c.yaml",
        metrics_host="127.0.0.1",
        metrics_port=9999,
        debounce=1.5,
        base={"cache": {"dir": "/var/cache/symbols"}},
    )
    assert options_from_args(build_parser().parse_args(["run", "-A", "--no-metrics"])).metrics_port is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("cache: {max_size: lots}\n", "cache.max_size"),
        ("sources: []\n", "must not list sources"),
    ],
)
def test_a_bad_base_configuration_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["run", "-A", "--base-config", str(base)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_options_from_the_environment(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text("listen: {port: 9000}\n", encoding="utf-8")
    options = OperatorOptions.from_env(
        {
            "SYMBOL_OPERATOR_METRICS_PORT": "0",
            "SYMBOL_OPERATOR_DEBOUNCE": "0.05",
            "SYMBOL_OPERATOR_CONFIG_SECRET": "x",
            "SYMBOL_OPERATOR_BASE_CONFIG": str(base),
        }
    )
    assert (options.metrics_port, options.debounce, options.config_secret) == (0, 0.05, "x")
    assert options.base == {"listen": {"port": 9000}}
    assert OperatorOptions.from_env({}) == OperatorOptions()


def test_the_crds_subcommand_checks_the_directory() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "symbol_operator", "crds", "--check", "crds"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

"""Side-by-side benchmark: nginx (static, sendfile), elfutils debuginfod (federating cache) and
symbol-proxy, all on 127.0.0.1, in one run, with wrk.

    make bench            # or: .venv/bin/python bench/run.py [--duration 10] [--connections 32]

Every server serves the same ELF files (built here with distinct GNU build ids, padded to 16 KiB,
1 MiB, 100 MiB and 2 GiB): nginx straight from a store laid out as debuginfod's ``buildid/<id>/…``;
debuginfod and the proxy as caches in front of that nginx. Hits are measured after one warm-up
request; cached 404s after one miss. The report goes to stdout as Markdown and to
``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISS_FILES = ("100MiB", "100MiB-b", "100MiB-c")
SIZES = {
    "16KiB": 16 * 1024,
    "1MiB": 1024 * 1024,
    **{label: 100 * 1024 * 1024 for label in MISS_FILES},
    "2GiB": 2 * 1024**3,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*argv: str, **kwargs: object) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout  # type: ignore[call-overload, no-any-return]


def build_elf(work: Path, name: str, size: int) -> tuple[Path, str]:
    """A small program with its own build id, padded with a section to ``size`` bytes."""
    src = work / f"{name}.c"
    src.write_text(f'int main(void) {{ return {len(name)}; }} const char *tag = "{name}";\n')
    exe = work / name
    run("gcc", "-O0", "-g", "-Wl,--build-id", "-o", str(exe), str(src))
    pad = size - exe.stat().st_size - 4096
    if pad > 0:
        blob = work / f"{name}.pad"
        with open(blob, "wb") as f:
            f.truncate(pad)  # sparse: zeros cost no disk until written
        run(
            "objcopy",
            "--add-section",
            f".pad={blob}",
            "--set-section-flags",
            ".pad=noload,readonly",
            str(exe),
        )
        blob.unlink()
    notes = run("readelf", "-n", str(exe))
    build_id = re.search(r"Build ID: ([0-9a-f]+)", notes)
    assert build_id
    return exe, build_id.group(1)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def process(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(url: str, duration: int, connections: int, pid: int) -> tuple[float, float]:
    """Requests per second, and the server's own CPU time per request in µs (user + system, of every
    process in its process group: nginx's workers, debuginfod's threads, the proxy), which does not
    depend on what else the machine runs."""
    cpu_before = cpu_seconds(pid)
    out = run("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url)
    cpu = cpu_seconds(pid) - cpu_before
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not match or not total:
        raise RuntimeError(f"unexpected wrk output: {out}")
    return float(match.group(1)), cpu / max(1, int(total.group(1))) * 1e6


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the processes in process group ``pgid``."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is field 3 of proc(5): state; [2] is pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def ttfb(url: str) -> tuple[float, float]:
    out = run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_starttransfer} %{time_total}", url)
    code, first, total = out.split()
    assert code == "200", f"{url}: {code}"
    return float(first), float(total)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-2gib", action="store_true")
    parser.add_argument(
        "--proxy",
        default=str(REPO / ".venv/bin/symbol-proxy"),
        help="the symbol-proxy executable (another checkout's, for a before/after run)",
    )
    parser.add_argument("--out", default="latest.json", help="file name under bench/results/")
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "debuginfod", "gcc", "objcopy", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup --bench")

    work = Path(tempfile.mkdtemp(prefix="symbench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    results: dict[str, object] = {"duration_s": args.duration, "connections": args.connections}
    try:
        store = work / "store"
        ids = {}
        for label, size in SIZES.items():
            if label == "2GiB" and args.skip_2gib:
                continue
            exe, build_id = build_elf(work, f"prog{label.replace('-', '_')}", size)
            target = store / "buildid" / build_id / "executable"
            target.parent.mkdir(parents=True)
            shutil.move(exe, target)
            ids[label] = build_id
        missing = "ab" * 20

        nginx_port, dbg_port, proxy_port = free_port(), free_port(), free_port()
        nginx_dir = work / "nginx"
        nginx_dir.mkdir()
        (nginx_dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {nginx_dir}/nginx.pid;
error_log stderr;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on; tcp_nopush on;
  client_body_temp_path {nginx_dir}/body; proxy_temp_path {nginx_dir}/proxy;
  fastcgi_temp_path {nginx_dir}/fcgi; uwsgi_temp_path {nginx_dir}/uwsgi; scgi_temp_path {nginx_dir}/scgi;
  server {{ listen 127.0.0.1:{nginx_port}; root {store}; }}
}}
""")
        proxy_cfg = work / "proxy.yaml"
        proxy_cfg.write_text(
            json.dumps(
                {
                    "listen": {"host": "127.0.0.1", "port": proxy_port},
                    "cache": {"dir": str(work / "proxy-cache"), "max_size": "8GiB"},
                    "sources": [
                        {
                            "id": "store",
                            "type": "http",
                            "url": f"http://127.0.0.1:{nginx_port}/buildid/",
                            "layout": {"type": "debuginfod"},
                        }
                    ],
                }
            )
        )
        servers = {
            "nginx": f"http://127.0.0.1:{nginx_port}",
            "debuginfod": f"http://127.0.0.1:{dbg_port}",
            "symbol-proxy": f"http://127.0.0.1:{proxy_port}",
        }
        with contextlib.ExitStack() as stack:
            nginx = stack.enter_context(
                process(
                    [
                        "nginx",
                        "-p",
                        str(nginx_dir),
                        "-c",
                        str(nginx_dir / "nginx.conf"),
                        "-e",
                        "stderr",
                        "-g",
                        "daemon off;",
                    ],
                    work / "nginx.log",
                )
            )
            dbg = stack.enter_context(
                process(
                    ["debuginfod", "-p", str(dbg_port), "-d", ":memory:", "-t", "0", "-g", "0"],
                    work / "debuginfod.log",
                    env={
                        "DEBUGINFOD_URLS": servers["nginx"],
                        "DEBUGINFOD_CACHE_PATH": str(work / "dbg-cache"),
                    },
                )
            )
            proxy = stack.enter_context(
                process(
                    [
                        args.proxy,
                        "--log-level",
                        "warning",
                        "serve",
                        "--config",
                        str(proxy_cfg),
                    ],
                    work / "proxy.log",
                )
            )
            for url in servers.values():
                wait_http(url + "/buildid/" + missing + "/executable")
            time.sleep(1.0)
            results["idle_rss_kib"] = {"symbol-proxy": rss_kib(proxy.pid)}

            pids = {"nginx": nginx.pid, "debuginfod": dbg.pid, "symbol-proxy": proxy.pid}
            hits: dict[str, dict[str, float]] = {}
            hits_cpu: dict[str, dict[str, float]] = {}
            for label in ("16KiB", "1MiB"):
                hits[label], hits_cpu[label] = {}, {}
                for name, base in servers.items():
                    url = f"{base}/buildid/{ids[label]}/executable"
                    ttfb(url)  # warm: fills the caches
                    ttfb(url)  # and the proxy's in-memory copy or open handle
                    hits[label][name], hits_cpu[label][name] = wrk(
                        url, args.duration, args.connections, pids[name]
                    )
            results["hit_rps"] = hits
            results["hit_cpu_us"] = hits_cpu
            neg: dict[str, float] = {}
            neg_cpu: dict[str, float] = {}
            for name, base in servers.items():
                url = f"{base}/buildid/{missing}/executable"
                neg[name], neg_cpu[name] = wrk(url, args.duration, args.connections, pids[name])
            results["cached_404_rps"] = neg
            results["cached_404_cpu_us"] = neg_cpu

            # Three different 100 MiB files, each a miss once per cache; medians of the three. The
            # direct download is nginx sending the same file (the upstream both caches fetch from).
            miss: dict[str, dict[str, float]] = {}
            for name in ("debuginfod", "symbol-proxy", "nginx"):
                firsts, totals, cpus = [], [], []
                for label in MISS_FILES:
                    cpu_before = cpu_seconds(pids[name])
                    first, total = ttfb(f"{servers[name]}/buildid/{ids[label]}/executable")
                    cpus.append((cpu_seconds(pids[name]) - cpu_before) / 100 * 1e6)
                    firsts.append(first)
                    totals.append(total)
                row_name = "nginx (direct: the upstream itself)" if name == "nginx" else name
                miss[row_name] = {
                    "ttfb_s": statistics.median(firsts),
                    "total_s": statistics.median(totals),
                    "cpu_us_per_mib": statistics.median(cpus),
                }
            results["miss_100MiB"] = miss

            if "2GiB" in ids:
                before = rss_kib(proxy.pid)
                samples = []
                curl = subprocess.Popen(
                    [
                        "curl",
                        "-s",
                        "-o",
                        "/dev/null",
                        f"{servers['symbol-proxy']}/buildid/{ids['2GiB']}/executable",
                    ]
                )
                while curl.poll() is None:
                    samples.append(rss_kib(proxy.pid))
                    time.sleep(0.05)
                results["stream_2GiB"] = {
                    "rss_before_kib": before,
                    "rss_max_kib": max(samples or [before]),
                    "rss_growth_kib": max(samples or [before]) - before,
                }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(results, indent=2))
    print(report(results))
    return 0


def report(r: dict[str, object]) -> str:
    lines = [
        "| measure | nginx | debuginfod | symbol-proxy | proxy / nginx | proxy / debuginfod |",
        "|---|---|---|---|---|---|",
    ]

    def row(name: str, values: dict[str, float], digits: int = 0) -> None:
        n, d, p = values["nginx"], values["debuginfod"], values["symbol-proxy"]
        lines.append(
            f"| {name} | {n:,.{digits}f} | {d:,.{digits}f} | {p:,.{digits}f} | {p / n:.2f} | {p / d:.2f} |"
        )

    hits, hits_cpu = r["hit_rps"], r["hit_cpu_us"]
    assert isinstance(hits, dict) and isinstance(hits_cpu, dict)
    for label, values in hits.items():
        row(f"hit req/s, {label}", values)
        row(f"hit CPU µs/request, {label}", hits_cpu[label], 1)
    neg, neg_cpu = r["cached_404_rps"], r["cached_404_cpu_us"]
    assert isinstance(neg, dict) and isinstance(neg_cpu, dict)
    row("cached 404 req/s", neg)
    row("cached 404 CPU µs/request", neg_cpu, 1)
    lines.append("")
    lines.append("| 100 MiB miss (median of 3 files) | time to first byte | total | server CPU µs per MiB |")
    lines.append("|---|---|---|---|")
    miss = r["miss_100MiB"]
    assert isinstance(miss, dict)
    for name, values in miss.items():
        cpu = f"{values['cpu_us_per_mib']:,.0f}"
        lines.append(
            f"| {name} | {values['ttfb_s'] * 1000:.1f} ms | {values['total_s'] * 1000:.0f} ms | {cpu} |"
        )
    lines.append("")
    lines.append(
        f"idle RSS of symbol-proxy: {statistics.mean([r['idle_rss_kib']['symbol-proxy']]) / 1024:.1f} MiB"
    )  # type: ignore[index]
    if "stream_2GiB" in r:
        s = r["stream_2GiB"]
        lines.append(f"RSS growth while streaming a 2 GiB miss: {s['rss_growth_kib'] / 1024:.1f} MiB")  # type: ignore[index]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

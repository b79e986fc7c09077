"""``symbol-service``: the publishing service (``serve``) and its small tools (``hash-token``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from symbol_service import tokens

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symbol-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    hashing = commands.add_parser("hash-token", help="print the stored form of a token read from stdin")
    hashing.add_argument("--new", action="store_true", help="make a new random token, print it and its hash")
    hashing.set_defaults(run=_hash_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

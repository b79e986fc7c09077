"""A pytest plugin for mutation runs only: empty the product's memo caches before every test, and
re-run the import-time code of the mutated module in each mutant's worker.

mutmut runs the tests once in its main process and then forks one worker per mutant. Two kinds of
state made in the main process are inherited by every worker, so a mutant in the code behind them
never runs and "survives":

* a result remembered by a ``functools.lru_cache`` (a compiled glob, a parsed key, a parsed Range
  header): the caches are cleared before every test, so each test computes afresh, as it does in a
  normal run;
* what the module computed when it was imported (tables built by a function at module level, the
  validators pydantic wires into a model when its class is created): for the modules named in
  ``MUTATION_RELOAD`` (comma-separated, set by ``scripts/mutation`` only where the tests reach the
  module through its module object, never through names imported from it), the module is
  re-imported in place once per worker, with the worker's mutant active, and the test modules are
  imported again after it (their parametrize values are objects of the module). While mutmut
  collects which tests reach which function, the module's code also runs again in every test's
  setup, so that the functions it calls at import time are judged by every test, not by the first.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("symbol_proxy", "symbol_operator", "symbol_service", "symbol_publish")


def _reloaded() -> list[str]:
    return [name for name in os.environ.get("MUTATION_RELOAD", "").split(",") if name]


def pytest_sessionstart(session: Any) -> None:
    names = [name for name in _reloaded() if name in sys.modules]
    for name in names:
        importlib.reload(sys.modules[name])
    if names:
        # The test modules hold objects of the module as it was (parametrize values such as enum
        # members): they are imported again by this session's collection.
        for name in [name for name in sys.modules if name.startswith("tests.")]:
            if name.rpartition(".")[2].startswith("test_"):
                del sys.modules[name]


def pytest_runtest_setup(item: Any) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        # mutmut judges a mutant only by the tests that reached its function while it collected its
        # statistics; import-time code is reached once, before the first test. Running the module's
        # code again (into a namespace that is thrown away) during every test's setup lets every
        # test judge it.
        for name in _reloaded():
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None)
            if path:
                code = compile(Path(path).read_text(encoding="utf-8"), path, "exec")
                exec(code, {"__name__": name, "__file__": path})
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PACKAGES:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()

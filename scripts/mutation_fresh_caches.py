"""A pytest plugin for mutation runs only: empty the product's memo caches before every test.

mutmut runs the tests once in its main process and then forks one worker per mutant. A result
remembered by a ``functools.lru_cache`` in the main process (a compiled glob, a parsed key, a parsed
Range header) is inherited by every worker, so a mutant in the code behind the cache never runs
and "survives". Clearing the caches makes each test compute afresh, as it does in a normal run.
"""

from __future__ import annotations

import sys
from typing import Any

PACKAGES = ("symbol_proxy", "symbol_operator")


def pytest_runtest_setup(item: Any) -> None:
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in PACKAGES:
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()

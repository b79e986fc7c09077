"""``python -m symbol_operator`` is ``symbol-operator``."""

from symbol_operator.cli import main

raise SystemExit(main())

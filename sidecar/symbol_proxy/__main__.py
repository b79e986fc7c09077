import sys

from symbol_proxy.cli import main

sys.exit(main())

"""``python -m cutover``: see :mod:`cutover.cli`."""

import sys

from cutover.cli import main

sys.exit(main())

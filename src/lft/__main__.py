"""``python -m lft`` is the ``lft`` command."""

import sys

from lft.cli import main

sys.exit(main())

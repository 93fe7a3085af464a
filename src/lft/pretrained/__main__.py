"""``python -m lft.pretrained add|list``: see :mod:`lft.pretrained.package`."""

import sys

from lft.pretrained.package import main

sys.exit(main())

"""``python -m lft.data download NAME``: fetch a data set (see :mod:`lft.data.download`)."""

import sys

from lft.data.download import main

sys.exit(main())

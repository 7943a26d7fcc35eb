"""``python -m ioasid``: the ``ioasid`` command."""

import sys

from ioasid.cli import main

sys.exit(main())

import sys

from ioasid.cli import main

sys.exit(main())

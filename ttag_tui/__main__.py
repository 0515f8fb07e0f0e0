import sys

from ttag_tui.cli import main

sys.exit(main())

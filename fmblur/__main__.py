import sys

from fmblur.cli import main

sys.exit(main())

import sys

from enpire_bringup.cli import main

sys.exit(main())

import sys

from slm4offer.cli import main

sys.exit(main())

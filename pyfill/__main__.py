import sys

from pyfill.cli import main

sys.exit(main())

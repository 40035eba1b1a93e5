import sys

from cocoseg.cli import main

sys.exit(main())

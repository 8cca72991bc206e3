import sys

from holitom.cli import main

sys.exit(main())

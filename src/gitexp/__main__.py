"""`python -m gitexp …` is the same as `gitexp …`."""

import sys

from gitexp.cli import main

sys.exit(main())

"""`python -m decovlm` is the same as the `decovlm` command."""

import sys

from decovlm.cli import main

sys.exit(main())

"""``python -m shared.cli``: the ``deeplens`` command."""

import sys

from shared.cli.main import main

sys.exit(main())

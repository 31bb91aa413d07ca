"""``python -m gradparity``: the same as the ``gradparity`` command."""

import sys

from gradparity.cli.main import main

sys.exit(main())

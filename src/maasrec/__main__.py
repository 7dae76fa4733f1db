"""``python -m maasrec`` is the ``maasrec`` command."""

import sys

from .cli import main

sys.exit(main())

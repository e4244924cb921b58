"""``python -m analysis_wrapper`` runs the ``analysis-wrapper`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m mapdeploy``: the same as the ``mapdeploy`` command."""
import sys

from .cli import main

sys.exit(main())

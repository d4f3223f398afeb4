"""``python -m stabench``: the CLI, as the ``stabench`` command."""
import sys

from .cli import main

sys.exit(main())

"""``python -m deepemhancer`` runs the command."""

import sys

from .cli import main

sys.exit(main())

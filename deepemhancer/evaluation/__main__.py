"""``python -m deepemhancer.evaluation`` = ``deepemhancer-eval``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m racelab`` runs the command line."""

import sys

from racelab.cli import main

sys.exit(main())

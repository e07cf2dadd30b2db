"""``python -m cubecut_infra.cli`` = the ``cubecut`` command."""
import sys

from . import main

sys.exit(main())

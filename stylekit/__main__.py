import sys

from stylekit.commands.cli import main

sys.exit(main())

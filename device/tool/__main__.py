"""Entry point: `python -m device.tool SUBCOMMAND --help`."""

import sys
from pathlib import Path

# The tool reads cdk.json through stacks.settings: make the repository importable from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from device.tool.cli import main

raise SystemExit(main())

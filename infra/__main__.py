"""Entry point that `pulumi up` runs (Pulumi.yaml: main: infra/)."""

import sys
from pathlib import Path

# Pulumi runs this directory as a script, so the repository root must be importable for `infra.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.program import main  # noqa: E402

main()

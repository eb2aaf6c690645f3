"""``python -m aksjobs_cli``: run one command and exit with its code."""

from aksjobs_cli.commands import main

raise SystemExit(main())

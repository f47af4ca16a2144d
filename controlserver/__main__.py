from controlserver.cli import main

raise SystemExit(main())

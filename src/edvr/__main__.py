from edvr.cli import main

raise SystemExit(main())

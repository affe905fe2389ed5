from manifesto.cli.main import main

raise SystemExit(main())

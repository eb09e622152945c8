from quickike.cli import main

raise SystemExit(main())

from trainvis.cli import main

raise SystemExit(main())

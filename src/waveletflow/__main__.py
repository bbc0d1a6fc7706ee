from waveletflow.cli import main

raise SystemExit(main())

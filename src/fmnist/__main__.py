from fmnist.cli.parser import main

raise SystemExit(main())

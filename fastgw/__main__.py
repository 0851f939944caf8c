from fastgw.cli import main

raise SystemExit(main())

from kubegym_operator.main import main

raise SystemExit(main())

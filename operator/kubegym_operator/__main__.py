from kubegym_operator.entrypoint import main

raise SystemExit(main())

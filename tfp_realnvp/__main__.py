from tfp_realnvp.cli import main

raise SystemExit(main())

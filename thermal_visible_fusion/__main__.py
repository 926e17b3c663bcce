from thermal_visible_fusion.cli import main

raise SystemExit(main())

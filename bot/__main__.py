from bot.entry.cli import main

raise SystemExit(main())

import sys

from wordslab_dashboard.cli import main

sys.exit(main())

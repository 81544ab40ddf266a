import sys

from act_equiv.cli import main

sys.exit(main())

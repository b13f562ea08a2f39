"""`python -m dprepro.cli ARGS`, as the console script (bench --paths starts it so, one process per path)."""

import sys

from dprepro.cli import main

if __name__ == "__main__":      # importing the module (as the tests' collection does) runs nothing
    sys.exit(main())

"""``python -m alexnet_ext.prepare SRC OUT``: image tree -> shards (see alexnet_ext.data.prepare)."""
import sys

from .data.prepare import main

if __name__ == "__main__":
    sys.exit(main())

"""``python -m framecache``: the demo."""

from .demo import main

main()

"""``python -m api.cli``: the `jpki` console script without the installed script (tests, benches,
a checkout without `pip install`)."""

from api.cli import main

main()

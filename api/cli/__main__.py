"""``python -m api.cli``: the `jpki` console script without the installed script (tests, benches,
a checkout without `pip install`)."""

from api.cli import main

if __name__ == "__main__":  # not when imported (the clean-install test imports every module)
    main()

"""Lists the registered methods: ``jaxcf methods [NAME ...]`` prints each one's
config type with its defaults and the resources ``make`` needs for it."""

import argparse

from jaxcf.methods._registry import describe, method_names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(method_names()))
    try:
        print(describe(*parser.parse_args(argv).names))
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    main()

"""``python -m explain.seeds``: see :mod:`explain.seeds`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from explain.seeds import __doc__ as DOC
from explain.seeds._report import markdown, summarize
from explain.seeds._rows import reference_row
from explain.seeds._study import SeedStudy, run_seed
from jaxcf.core import write_json_atomic, write_text_atomic


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain.seeds", description=DOC.split("\n")[0])
    parser.add_argument("train", help="the train config file")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument(
        "--seed-field",
        action="append",
        default=None,
        help="a dotted field the seed sets (repeatable; default: seed)",
    )
    parser.add_argument(
        "--explain",
        default=None,
        help="an amortised explain config file, or a DeDUCE protocol config file",
    )
    parser.add_argument("--workdir", type=Path, required=True, help="seed_<s>/ folders go here")
    parser.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md")
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="LABEL=REPORT.json[:METHOD]",
        help="a recorded protocol report's row shown beside the spread (METHOD: generator; a "
        "DeDUCE report's method label)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="a config override"
    )
    args = parser.parse_args(argv)
    bad = [s for s in args.set if "=" not in s]
    if bad:
        parser.error(f"--set takes FIELD=VALUE, got {bad}")
    study = SeedStudy(
        train=args.train,
        seeds=tuple(args.seeds),
        seed_fields=tuple(args.seed_field or ("seed",)),
        explain=args.explain,
        overrides=tuple(tuple(s.split("=", 1)) for s in args.set),
    )
    records = [run_seed(study, s, args.workdir) for s in study.seeds]
    references = {}
    for item in args.reference:
        label, _, where = item.partition("=")
        path, _, method = where.partition(":")
        if not label or not path:
            parser.error(f"--reference takes LABEL=REPORT.json[:METHOD], got {item!r}")
        references[label] = reference_row(path, method or "generator")
    doc = summarize(study, records, references)
    text = markdown(doc, args.title or f"Seed spread: {Path(args.train).stem}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.out.with_suffix(".json"), doc)
        write_text_atomic(args.out.with_suffix(".md"), text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

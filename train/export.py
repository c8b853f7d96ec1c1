"""Writes a compact copy of a trained classifier (weights rounded to bfloat16 precision, density
refitted) or AttGAN-like model (both networks rounded, held-out numbers measured again), small
enough to ship in ``jaxcf/assets``.

    python -m train.export --checkpoint workdir/demo_resnet_w32/checkpoint \\
        --out jaxcf/assets/demo_resnet_w32

Prints the content digest, which is also written beside the checkpoint and checked whenever
``bundled:<name>`` is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf import checkpoint
from jaxcf.training import attgan
from jaxcf.training.export import export_attgan_compact, export_compact


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", required=True, type=Path, help="a trained model's checkpoint (or workdir)"
    )
    parser.add_argument("--out", required=True, type=Path, help="where the compact copy goes")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    source = args.checkpoint
    if (source / "checkpoint").is_dir():
        source = source / "checkpoint"
    kind = checkpoint.read_metadata(source).get("kind")
    export = export_attgan_compact if kind == attgan.KIND else export_compact
    digest = export(source, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out}; content sha256 {digest}")


if __name__ == "__main__":
    main()

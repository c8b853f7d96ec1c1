"""Runs the DeDUCE protocol described by a config file.

    python -m explain.main --config explain/configs/demo.py --workdir workdir/demo

The config file defines ``get_config() -> jaxcf.protocols.deduce.ProtocolConfig``. Re-running
with the same workdir reuses the trained classifiers and every finished chunk of counterfactuals.

Over several processes (hosts), start the same command in each with ``--distributed`` (Slurm,
Cloud TPU: detected) or with ``--coordinator host:port --num_processes P --process_id I``; the
workdir must be on a shared file system and the classifiers trained beforehand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcf.config_file import add_config_argument, parse_args
from jaxcf.protocols.deduce import run_protocol


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_argument(parser)
    parser.add_argument("--workdir", required=True, type=Path, help="outputs and model go here")
    parser.add_argument("--distributed", action="store_true", help="join a multi-process job")
    parser.add_argument("--coordinator", help="host:port of process 0 (implies --distributed)")
    parser.add_argument("--num_processes", type=int, help="processes in the job")
    parser.add_argument("--process_id", type=int, help="this process's index")
    args, config = parse_args(parser, argv)  # configs are dataclasses: no JAX backend starts
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        from jaxcf import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    run_protocol(config, args.workdir)


if __name__ == "__main__":
    main()

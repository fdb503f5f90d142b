"""Run one pktflow NF from environment variables: the container image's entry point.

A container is configured by its environment, not its command line, so this reads
PKTFLOW_NF (the program), PKTFLOW_PORTS ("0=xdp:eth1 1=xdp:eth2"), PKTFLOW_STATS
(HOST:PORT of /metrics and /stats), PKTFLOW_STATS_PUBLIC (1 to allow a non-loopback
stats address) and PKTFLOW_ARGS (more `pktflow flow run` options), and replaces itself
with `python -m pktflow flow run ...`, so the NF is the container's process and gets its
SIGTERM. The image and tests/deploy run this same file.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping

TRUE = {"1", "true", "yes", "on"}
FALSE = {"", "0", "false", "no", "off"}


class EnvError(ValueError):
    """A PKTFLOW_* variable is missing or malformed; the message names it."""


def command(env: Mapping[str, str], python: str = sys.executable) -> list[str]:
    """The `pktflow flow run` command line the environment describes."""
    program = env.get("PKTFLOW_NF", "").strip()
    if not program:
        raise EnvError("PKTFLOW_NF is not set: give the NF program's path, e.g. /etc/pktflow/nf.py")
    if not os.path.isfile(program):
        raise EnvError(f"PKTFLOW_NF={program}: no such file (is the ConfigMap mounted?)")
    specs = env.get("PKTFLOW_PORTS", "").split()
    if not specs:
        raise EnvError('PKTFLOW_PORTS is not set: give port specs, e.g. "0=xdp:eth1 1=xdp:eth2"')
    argv = [python, "-m", "pktflow", "flow", "run", program]
    for spec in specs:
        argv += ["--port", spec]
    stats = env.get("PKTFLOW_STATS", "").strip()
    if stats:
        argv += ["--stats", stats]
    public = env.get("PKTFLOW_STATS_PUBLIC", "").strip().lower()
    if public not in TRUE | FALSE:
        raise EnvError(f"PKTFLOW_STATS_PUBLIC={public}: expected 1 or 0")
    if public in TRUE:
        argv.append("--stats-public")
    try:
        argv += shlex.split(env.get("PKTFLOW_ARGS", ""))
    except ValueError as e:
        raise EnvError(f"PKTFLOW_ARGS: {e}") from None
    return argv


def main() -> None:
    try:
        argv = command(os.environ)
    except EnvError as e:
        print(f"pktflow-entrypoint: {e}", file=sys.stderr)
        sys.exit(2)
    print("pktflow-entrypoint: " + shlex.join(argv[1:]), file=sys.stderr, flush=True)
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()

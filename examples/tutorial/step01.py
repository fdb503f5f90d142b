"""Step 1: initialize the system and its ports, but build no flows: nothing comes back.

    python examples/tutorial/step01.py --port 0=mem:p0 --port 1=mem:p1 --target direct
"""

from common import init_common_state, run


def build(nf, args):
    init_common_state(nf, args)


if __name__ == "__main__":
    run(build, __doc__)

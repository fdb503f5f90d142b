"""pktflow: network functions as flow graphs of compiled Python functions."""

from pktflow.cache import configure_numba_cache

__version__ = "0.1.0"

configure_numba_cache()

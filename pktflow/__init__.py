"""pktflow: network functions as flow graphs of compiled Python functions."""

__version__ = "0.1.0"

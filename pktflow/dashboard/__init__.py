"""The live dashboard: one page in the browser for a running NF and its generator.

The page (`static/`), its event stream and the JSON and Prometheus endpoints are served by
one server, `StatsHTTPServer`, from a `Board` of named snapshot sources. `pktflow flow run
--stats`, `pktflow pktgen --stats` and `pktflow tutorial --dashboard` start it; see
docs/dashboard.md.
"""

from pktflow.dashboard.server import BindError, Board, StatsHTTPServer, is_local

__all__ = ["BindError", "Board", "StatsHTTPServer", "is_local"]

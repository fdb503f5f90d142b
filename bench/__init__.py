"""pktflow benchmarks: each module runs pktflow and its peers in one run and prints ratios."""

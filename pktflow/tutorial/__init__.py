"""The tutorial steps 1 to 11 and the NAT example, run against pktflow's own generator."""

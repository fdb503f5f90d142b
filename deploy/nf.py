"""The NF the image runs unless PKTFLOW_NF names another: a two-port firewall.

Port 0 faces the clients, port 1 the servers. Packets from port 0 pass to port 1 when the
first matching line of the rules file (PKTFLOW_RULES, NFF-Go's L3 table) says Accept and
are dropped otherwise; replies from port 1 pass back to port 0. The rules file is watched:
an edit (a ConfigMap update) takes effect within a second, without a restart, and a broken
edit keeps the rules in force.
"""

import os

from pktflow.acl import L3Rules

RULES = os.environ.get("PKTFLOW_RULES", "/etc/pktflow/rules.conf")


def build(nf):
    rules = L3Rules.load(RULES).watch()

    def accepted(pkt):
        return rules.permit(pkt)

    inbound = nf.receiver(0)
    rejected = nf.separator(inbound, accepted)
    nf.stopper(rejected)
    nf.sender(inbound, 1)
    nf.sender(nf.receiver(1), 0)

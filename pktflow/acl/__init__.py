"""ACL rule tables (layer 3: imports only pktflow.packet and pktflow.ports).

NFF-Go's L3 and L2 rule tables, in text and JSON form, compiled into arrays that Numba
kernels classify with first-match semantics, and watched files that swap in new rules
atomically between batches. See docs/acl.md.

    rules = L3Rules.load("rules1.conf").watch()
    rules.permit(pkt)   # Accept -> True, Reject -> False, no match -> False
    rules.output(pkt)   # Accept 1, Reject 0, a flow number, no match 0
"""

from pktflow.acl.kernels import (
    l2_classify_batch,
    l2_match,
    l2_output,
    l2_permit,
    l3_classify_batch,
    l3_classify_ipv4_tuples,
    l3_match,
    l3_output,
    l3_permit,
)
from pktflow.acl.rules import (
    L2Rule,
    L3Rule,
    RuleError,
    RuleLineError,
    parse_l2_json,
    parse_l2_text,
    parse_l3_json,
    parse_l3_text,
)
from pktflow.acl.table import L2Rules, L2RuleSet, L3Rules, L3RuleSet, RuleSet, RuleTable

__all__ = [
    "L2Rule", "L2RuleSet", "L2Rules", "L3Rule", "L3RuleSet", "L3Rules", "RuleError",
    "RuleLineError", "RuleSet", "RuleTable", "l2_classify_batch", "l2_match", "l2_output",
    "l2_permit", "l3_classify_batch", "l3_classify_ipv4_tuples", "l3_match", "l3_output",
    "l3_permit", "parse_l2_json", "parse_l2_text", "parse_l3_json", "parse_l3_text",
]

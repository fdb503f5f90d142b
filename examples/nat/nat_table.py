"""The NAT's translation table: private endpoints to public ports and back (Numba).

Plain compiled functions over the arrays of `NatState` (see nat.py), without packets: the
NAT's splitter functions call them through this module, so they are compiled and cached
once, on their own, instead of inlined into each splitter's kernel.

- `pub_map[proto, public port]`: one 64-bit word per mapping, VALID | STATIC | private
  address << 16 | private port, 0 when free; written in one store.
- `keys`/`values`: a hash table, private endpoint key -> public port; linear probing,
  deletion by moving later entries back (no tombstones).
"""

from __future__ import annotations

from numba import njit

PORT_FIRST, PORT_LAST = 1024, 65535
VALID = 1 << 62
STATIC = 1 << 61
HASH_SLOTS = 1 << 19  # 3 x 64512 mappings fit at 0.37 load
HASH_MASK = HASH_SLOTS - 1


@njit(cache=True, nogil=True)
def endpoint_key(proto_i, addr, port):
    """The hash key of a private endpoint (never 0, the empty mark)."""
    return ((proto_i + 1) << 48) | (addr << 16) | port


@njit(cache=True, nogil=True)
def home_slot(key):
    """Where `key` starts probing; products stay below 2**63 in every arithmetic."""
    h = ((key >> 16) & 0xFFFFFFFF) * 40503 + (key & 0xFFFF) * 2654435761 + (key >> 48) * 97
    h = h ^ (h >> 17)
    h = h ^ (h >> 31)
    return h & HASH_MASK


@njit(cache=True, nogil=True)
def hash_find(keys, key):
    """The slot holding `key`, or -1 (linear probing, no tombstones)."""
    i = home_slot(key)
    while keys[i] != 0:
        if keys[i] == key:
            return i
        i = (i + 1) & HASH_MASK
    return -1


@njit(cache=True, nogil=True)
def hash_insert(keys, values, key, value):
    i = home_slot(key)
    while keys[i] != 0 and keys[i] != key:
        i = (i + 1) & HASH_MASK
    values[i] = value
    keys[i] = key


@njit(cache=True, nogil=True)
def hash_remove(keys, values, slot):
    """Empty `slot`, moving later entries of its probe run back so lookups still find them
    (Knuth's algorithm R for linear probing)."""
    hole = slot
    j = slot
    while True:
        j = (j + 1) & HASH_MASK
        if keys[j] == 0:
            break
        home = home_slot(keys[j])
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if (j > hole and (home <= hole or home > j)) or (j < hole and home <= hole
                                                          and home > j):
            keys[hole] = keys[j]
            values[hole] = values[j]
            hole = j
    keys[hole] = 0
    values[hole] = 0


@njit(cache=True, nogil=True)
def expired(pub_map, last_used, proto_i, port, now, timeout):
    """True when the dynamic mapping of `port` has been idle longer than `timeout`."""
    if pub_map[proto_i, port] & STATIC:
        return False
    return now - last_used[proto_i, port] > timeout


@njit(cache=True, nogil=True)
def allocate_port(pub_map, last_used, keys, values, cursor, proto_i, now, timeout):
    """The next free (or idle-expired) public port from the cursor upward, -1 if none.
    An expired mapping taken over loses its private-side entry."""
    port = cursor[proto_i]
    for _ in range(PORT_LAST - PORT_FIRST + 1):
        if port > PORT_LAST or port < PORT_FIRST:
            port = PORT_FIRST
        word = pub_map[proto_i, port]
        if word == 0 or expired(pub_map, last_used, proto_i, port, now, timeout):
            if word != 0:
                old = endpoint_key(proto_i, (word >> 16) & 0xFFFFFFFF, word & 0xFFFF)
                slot = hash_find(keys, old)
                if slot >= 0:
                    hash_remove(keys, values, slot)
            cursor[proto_i] = port + 1
            return port
        port += 1
    return -1


@njit(cache=True, nogil=True)
def public_port_for(pub_map, last_used, keys, values, cursor, proto_i, addr, port, now,
                    timeout):
    """The public port of a private endpoint, allocating one for a new endpoint; -1 when
    every port is taken. Takes arrays only, never a context class, so the cached
    signatures never name a module."""
    key = endpoint_key(proto_i, addr, port)
    slot = hash_find(keys, key)
    if slot >= 0:
        public = values[slot]
        last_used[proto_i, public] = now
        return public
    public = allocate_port(pub_map, last_used, keys, values, cursor, proto_i, now, timeout)
    if public < 0:
        return -1
    last_used[proto_i, public] = now
    # One 64-bit store publishes the mapping to the inbound thread.
    pub_map[proto_i, public] = VALID | (addr << 16) | port
    hash_insert(keys, values, key, public)
    return public

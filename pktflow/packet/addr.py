"""MAC, IPv4, IPv6 and CIDR addresses: parsing with clear errors, formatting.

Addresses are plain integers underneath (what compiled kernels see), wrapped in small
`int` subclasses that print the usual way and compare equal to their text form, so
`pkt.ipv4.src == "10.0.0.1"` reads naturally and means the same in compiled code.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


class AddressError(ValueError):
    """A text that should be an address is not one; the message quotes it."""


class MACAddr(int):
    """A 48-bit Ethernet address; prints as 00:11:22:33:44:55."""

    def __new__(cls, value: int | str | bytes | MACAddr) -> MACAddr:
        return super().__new__(cls, _to_int(value, parse_mac, 48, "MAC"))

    def __str__(self) -> str:
        return ":".join(f"{b:02x}" for b in int(self).to_bytes(6, "big"))

    def __repr__(self) -> str:
        return f"MACAddr('{self}')"

    def __eq__(self, other: object) -> bool:
        return _eq(self, other, parse_mac)

    def __ne__(self, other: object) -> bool:
        return _ne(self, other, parse_mac)

    __hash__ = int.__hash__

    @property
    def packed(self) -> bytes:
        return int(self).to_bytes(6, "big")


class IPv4Addr(int):
    """A 32-bit IPv4 address; prints dotted."""

    def __new__(cls, value: int | str | bytes | IPv4Addr) -> IPv4Addr:
        return super().__new__(cls, _to_int(value, parse_ipv4, 32, "IPv4"))

    def __str__(self) -> str:
        v = int(self)
        return f"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}"

    def __repr__(self) -> str:
        return f"IPv4Addr('{self}')"

    def __eq__(self, other: object) -> bool:
        return _eq(self, other, parse_ipv4)

    def __ne__(self, other: object) -> bool:
        return _ne(self, other, parse_ipv4)

    __hash__ = int.__hash__

    @property
    def packed(self) -> bytes:
        return int(self).to_bytes(4, "big")


class IPv6Addr(int):
    """A 128-bit IPv6 address; prints in RFC 5952 short form."""

    def __new__(cls, value: int | str | bytes | IPv6Addr) -> IPv6Addr:
        return super().__new__(cls, _to_int(value, parse_ipv6, 128, "IPv6"))

    def __str__(self) -> str:
        return str(ipaddress.IPv6Address(int(self)))

    def __repr__(self) -> str:
        return f"IPv6Addr('{self}')"

    def __eq__(self, other: object) -> bool:
        return _eq(self, other, parse_ipv6)

    def __ne__(self, other: object) -> bool:
        return _ne(self, other, parse_ipv6)

    __hash__ = int.__hash__

    @property
    def packed(self) -> bytes:
        return int(self).to_bytes(16, "big")


def _to_int(value: object, parse, bits: int, what: str) -> int:
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) != bits // 8:
            raise AddressError(f"{what} address needs {bits // 8} bytes, got {len(raw)}")
        return int.from_bytes(raw, "big")
    if isinstance(value, int):
        if not 0 <= value < (1 << bits):
            raise AddressError(f"{what} address {value} does not fit in {bits} bits")
        return int(value)
    raise AddressError(f"cannot make a {what} address from {type(value).__name__} {value!r}")


def _eq(self: int, other: object, parse) -> bool:
    if isinstance(other, str):
        try:
            return int(self) == parse(other)
        except AddressError:
            return False
    if isinstance(other, int):
        return int(self) == int(other)
    return NotImplemented


_HEX = frozenset("0123456789abcdefABCDEF")


def _is_decimal(text: str) -> bool:
    """ASCII digits only (str.isdigit also accepts other scripts' digits and superscripts)."""
    return text.isascii() and text.isdigit()


def _require_text(text: object, what: str) -> None:
    if not isinstance(text, str):
        raise AddressError(f"a {what} address must be text, got {type(text).__name__} {text!r}")


def _ne(self: int, other: object, parse) -> bool:
    # int.__ne__ would answer for text operands (always "not equal"): negate _eq instead.
    result = _eq(self, other, parse)
    return result if result is NotImplemented else not result


def _mac_error(text: str) -> str:
    return f'bad MAC address "{text}": expected six hex bytes like 00:11:22:33:44:55'


def parse_mac(text: str) -> int:
    """'00:11:22:33:44:55' (also '-' or '.'-grouped Cisco form) -> 48-bit int."""
    _require_text(text, "MAC")
    s = text.strip()
    if "." in s and len(s) == 14:  # 0011.2233.4455
        digits = s.replace(".", "")
    else:
        parts = s.replace("-", ":").split(":")
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            raise AddressError(_mac_error(text))
        digits = "".join(p.zfill(2) for p in parts)
    # int(..., 16) alone would accept signs and underscores.
    if len(digits) != 12 or not all(c in _HEX for c in digits):
        raise AddressError(_mac_error(text))
    return int(digits, 16)


def parse_ipv4(text: str) -> int:
    """'10.0.0.1' -> 32-bit int."""
    _require_text(text, "IPv4")
    parts = text.strip().split(".")
    if len(parts) != 4:
        raise AddressError(f'bad IPv4 address "{text}": expected four numbers like 10.0.0.1')
    value = 0
    for p in parts:
        if not _is_decimal(p) or int(p) > 255:
            raise AddressError(f'bad IPv4 address "{text}": "{p}" is not a number from 0 to 255')
        value = (value << 8) | int(p)
    return value


def parse_ipv6(text: str) -> int:
    """'2001:db8::1' -> 128-bit int."""
    _require_text(text, "IPv6")
    try:
        return int(ipaddress.IPv6Address(text.strip()))
    except ValueError as e:
        raise AddressError(f'bad IPv6 address "{text}": {e}') from None


@dataclass(frozen=True)
class CIDR:
    """A network: address and prefix length; `contains` works on plain ints."""

    version: int  # 4 or 6
    network: int
    prefix: int

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    @property
    def mask(self) -> int:
        all_ones = (1 << self.bits) - 1
        return (all_ones << (self.bits - self.prefix)) & all_ones

    def contains(self, address: int) -> bool:
        return (int(address) & self.mask) == self.network

    def __str__(self) -> str:
        addr = IPv4Addr(self.network) if self.version == 4 else IPv6Addr(self.network)
        return f"{addr}/{self.prefix}"


def parse_cidr(text: str, strict: bool = False) -> CIDR:
    """'111.2.0.0/31' or '2001:db8::/32' (a bare address means /32 or /128).

    Host bits are cleared unless `strict`, where they are an error.
    """
    _require_text(text, "CIDR")
    s = text.strip()
    addr_text, slash, prefix_text = s.partition("/")
    version = 6 if ":" in addr_text else 4
    try:
        address = parse_ipv6(addr_text) if version == 6 else parse_ipv4(addr_text)
    except AddressError:
        raise AddressError(
            f'bad CIDR "{text}": "{addr_text}" is not an IPv{version} address'
        ) from None
    bits = 32 if version == 4 else 128
    if slash:
        if not _is_decimal(prefix_text) or int(prefix_text) > bits:
            raise AddressError(f'bad CIDR "{text}": prefix must be a number from 0 to {bits}')
        prefix = int(prefix_text)
    else:
        prefix = bits
    cidr = CIDR(version, 0, prefix)
    network = address & cidr.mask
    if strict and network != address:
        net = CIDR(version, network, prefix)
        raise AddressError(f'bad CIDR "{text}": host bits are set (network is {net})')
    return CIDR(version, network, prefix)

"""Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`).

A quantity is a signed decimal number followed by at most one suffix: a binary SI suffix (`Ki`..`Ei`,
powers of 1024), a decimal SI suffix (`n u m k M G T P E`, powers of 1000) or a decimal exponent
(`e3`, `E-2`). Values are returned as exact `Decimal`s so that `0.1` CPU is 100 millicores, not
99.999...; callers convert to the unit they schedule in with `cpu_millis` and `memory_bytes`, both of
which round up as Kubernetes does (a request of 0.5 bytes still needs a byte).
"""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(rf"^({_NUMBER})(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")

_SUFFIX_MULTIPLIER: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
}


def parse_quantity(value: str | int | float) -> Decimal:
    """Parse a quantity into an exact Decimal; ValueError when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"quantity must be a string or a number, not {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"quantity must be finite, not {value!r}")
        # str() gives the shortest round-tripping form, so 0.1 stays 0.1 rather than its binary expansion.
        return Decimal(str(value))
    if not isinstance(value, str):
        raise ValueError(f"quantity must be a string or a number, not {type(value).__name__}")
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"quantities must match the regular expression '{_QUANTITY.pattern}'")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        base = Decimal(number)
        if suffix[:1] in ("e", "E") and len(suffix) > 1:
            return base.scaleb(int(suffix[1:]))
        return base * _SUFFIX_MULTIPLIER[suffix]
    except (InvalidOperation, OverflowError) as exc:
        raise ValueError(f"quantity {value!r} is out of range") from exc


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def cpu_millis(value: str | int | float | Decimal) -> int:
    """CPU in millicores, rounded up (`"100m"` → 100, `1.5` → 1500)."""
    q = value if isinstance(value, Decimal) else parse_quantity(value)
    return _ceil(q * 1000)


def memory_bytes(value: str | int | float | Decimal) -> int:
    """Memory (or any byte-sized resource) in bytes, rounded up (`"128Mi"` → 134217728)."""
    q = value if isinstance(value, Decimal) else parse_quantity(value)
    return _ceil(q)

from decimal import Decimal

import pytest

from api.quantity import cpu_millis, memory_bytes, parse_quantity


@pytest.mark.parametrize("text, expected", [
    ("100m", Decimal("0.1")),
    ("1.5", Decimal("1.5")),
    ("128Mi", Decimal(128 * 1024**2)),
    ("2Ki", Decimal(2048)),
    ("1G", Decimal(10**9)),
    ("1e3", Decimal(1000)),
    ("1E-2", Decimal("0.01")),
    (".5", Decimal("0.5")),
    ("-1", Decimal(-1)),
    ("500n", Decimal("0.0000005")),
])
def test_parse_quantity_strings(text, expected):
    assert parse_quantity(text) == expected


def test_parse_quantity_accepts_json_numbers_exactly():
    assert parse_quantity(3) == 3
    assert parse_quantity(0.1) == Decimal("0.1")


@pytest.mark.parametrize("bad", ["", "abc", "1mi", "1 Gi", " 1", "1e", "Mi", "1..2", True, None, [], float("nan")])
def test_parse_quantity_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_cpu_millis_rounds_up():
    assert cpu_millis("100m") == 100
    assert cpu_millis("1.5") == 1500
    assert cpu_millis(2) == 2000
    assert cpu_millis("1500u") == 2


def test_memory_bytes():
    assert memory_bytes("128Mi") == 134217728
    assert memory_bytes("1G") == 10**9
    assert memory_bytes("0.5") == 1

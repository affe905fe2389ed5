"""`--format` on hostile input: a usage error, never a MemoryError or RecursionError."""

from __future__ import annotations

import pytest

from manifesto.cli.template import Record, parse, render
from manifesto.cli.template_values import printf
from manifesto.errors import UsageError


def test_a_huge_printf_width_is_marked_as_go_does_not_allocated() -> None:
    assert printf("%99999999999s|%d", ["x", 1]) == "%!(BADWIDTH)|1"
    assert printf("%.99999999999s", ["x"]) == "%!(BADPREC)"
    assert printf("%" + "9" * 5000 + "d", [1]) == "%!(BADWIDTH)"  # past int()'s digit limit too
    assert printf("%5s", ["x"]) == "    x"  # ordinary widths still pad


@pytest.mark.parametrize(
    "template",
    [
        "{{" + "(" * 5000 + "1" + ")" * 5000 + "}}",
        "{{if 1}}" * 5000 + "{{end}}" * 5000,
    ],
)
def test_nesting_too_deep_is_a_usage_error(template: str) -> None:
    with pytest.raises(UsageError, match="nested too deeply"):
        render(parse(template), Record())

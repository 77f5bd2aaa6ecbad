"""The error registry and its documentation stay in sync."""

from pathlib import Path

from mlitb.errors import ErrorCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_error_code_is_documented_with_its_number_and_status():
    text = DOC.read_text()
    for code in ErrorCode:
        row = f"| `{code.name}` | {code.number} | {code.http_status} |"
        assert row in text, f"docs/errors.md lacks the row for {code.name}: {row}"


def test_error_numbers_are_unique():
    numbers = [c.number for c in ErrorCode]
    assert len(numbers) == len(set(numbers))

"""Generates docs/hyper.md, the table of every hyper-parameter (type, default, range, meaning), from `Hyper`.

The model is the only source: a field added to `Hyper` appears in the table once the file is
regenerated, and tests/unit/test_hyper_docs.py fails until it is. Regenerate with
    PYTHONPATH=. .venv/bin/python -m mlitb.master.hyper_docs --write
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from mlitb.master.project import Hyper

DOC = Path(__file__).resolve().parents[2] / "docs" / "hyper.md"
REGENERATE = "PYTHONPATH=. .venv/bin/python -m mlitb.master.hyper_docs --write"
TYPE_NAMES = {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string", "null": "null"}

HEADER = f"""# Hyper-parameters

A project's `hyper` object (`POST /api/projects`, the page's network editor, a closure's `config.json`).
Every field is optional and takes its default when left out; a value outside its range, an unknown
field or a value of the wrong JSON type (a string such as `"4"` or `"yes"` for a number or a boolean)
is refused with `INVALID_HYPER` (docs/errors.md), never converted. `learning_rate` and `period_s` can
also be changed while training with `PATCH /api/projects/{{id}}/hyper`, which changes exactly the fields
it carries.

This file is generated from the model `Hyper` in `mlitb/master/project.py`;
`tests/unit/test_hyper_docs.py` fails when they differ. Regenerate it with
`{REGENERATE}`.

| field | type | default | range | meaning |
|---|---|---|---|---|
"""


def _number(v: float | int) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(schema: dict) -> str:
    """The values a JSON-schema fragment allows, in interval or list notation."""
    if "anyOf" in schema:
        return " or ".join(_range(s) for s in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return ", ".join(f"`{json.dumps(v)}`" for v in values)
    kind = schema.get("type")
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is None and high is None:
            return "any finite number" if kind == "number" else "any integer"
        left = "(" if "exclusiveMinimum" in schema or low is None else "["
        right = ")" if "exclusiveMaximum" in schema or high is None else "]"
        return (f"{left}{'−∞' if low is None else _number(low)}, {'∞' if high is None else _number(high)}{right}"
                + (" (integers)" if kind == "integer" else ""))
    if kind == "boolean":
        return "`true`, `false`"
    if kind == "string":
        limits = [f"{k.removesuffix('Length')} {schema[k]} characters" for k in ("minLength", "maxLength") if k in schema]
        return "any string" + (f" ({', '.join(limits)})" if limits else "")
    if kind == "null":
        return "`null`"
    return f"see the JSON schema: `{json.dumps(schema)}`"


def _type(schema: dict) -> str:
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "enum" in schema or "const" in schema:
        return "string" if all(isinstance(v, str) for v in schema.get("enum", [schema.get("const")])) else "value"
    return TYPE_NAMES.get(schema.get("type"), "object")


def _resolve(schema: dict, defs: dict) -> dict:
    """A field's schema with a reference to a nested model (`$ref`, or pydantic's `allOf: [$ref]`) replaced by
    that model's schema, keeping the field's own default and description."""
    ref = schema.get("$ref") or next((s["$ref"] for s in schema.get("allOf", []) if "$ref" in s), None)
    if ref is None:
        return schema
    target = defs[ref.rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in schema.items() if k not in ("$ref", "allOf")}}


def _rows(properties: dict, defs: dict, prefix: str = "") -> list[str]:
    """One row per field; a nested model's fields follow as `outer.inner` rows."""
    rows = []
    for name, schema in properties.items():
        schema = _resolve(schema, defs)
        default = f"`{json.dumps(schema['default'])}`" if "default" in schema else "(required)"
        text = schema.get("description", "").replace("|", "\\|").replace("\n", " ")
        if "properties" in schema:
            rows.append(f"| `{prefix}{name}` | object | {default} | the fields below | {text} |")
            rows += _rows(schema["properties"], defs, f"{prefix}{name}.")
        else:
            rows.append(f"| `{prefix}{name}` | {_type(schema)} | {default} | {_range(schema)} | {text} |")
    return rows


def render(model: type[BaseModel] = Hyper) -> str:
    """The whole of docs/hyper.md (the table of `model`'s fields: `Hyper`'s, but for a test of the generator)."""
    schema = model.model_json_schema()
    return HEADER + "\n".join(_rows(schema["properties"], schema.get("$defs", {}))) + "\n"


def main(argv: list[str]) -> int:
    if argv[1:] == ["--write"]:
        DOC.write_text(render())
        print(f"wrote {DOC}")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

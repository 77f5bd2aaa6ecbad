"""docs/hyper.md is generated from `Hyper` and stays in sync with it; hyper values are never coerced."""

import pytest
from pydantic import BaseModel, Field

from mlitb.errors import MlitbError
from mlitb.master import hyper_docs
from mlitb.master.project import Hyper, parse_project_spec
from tests.helpers import TINY_NETWORK


def test_docs_hyper_md_is_what_the_generator_makes_from_the_model():
    assert hyper_docs.DOC.read_text() == hyper_docs.render(), (
        f"docs/hyper.md is out of date with mlitb/master/project.py Hyper; regenerate it: {hyper_docs.REGENERATE}")


def test_every_field_of_the_model_has_a_row_with_its_range():
    text = hyper_docs.render()
    for name in Hyper.model_fields:
        assert f"| `{name}` |" in text
    assert "| `learning_rate` | number | `0.01` | (0, 10] |" in text
    assert "| `batch_size` | integer | `32` | [1, 4096] (integers) |" in text
    assert "| `dropout` | number | `0.5` | [0, 1) |" in text
    assert ('| `aggregation` | string | `"centered_clip"` | `"centered_clip"`, `"mean"`, `"clipped_mean"`, `"median"`, '
            '`"trimmed_mean"` |') in text
    assert "| `deterministic` | boolean | `false` | `true`, `false` |" in text


def test_the_generator_describes_kinds_of_field_it_has_not_seen_yet():
    class Unseen(BaseModel):
        x: float = 0.5
        n: int = Field(0, ge=0)
        m: float | None = Field(None, le=1)
        s: str = Field("", max_length=8)
        k: int | None = None

    text = hyper_docs.render(Unseen)
    assert "| `x` | number | `0.5` | any finite number |" in text
    assert "| `n` | integer | `0` | [0, ∞) (integers) |" in text
    assert "| `m` | number or null | `null` | (−∞, 1] or `null` |" in text
    assert '| `s` | string | `""` | any string (max 8 characters) |' in text
    assert "| `k` | integer or null | `null` |" in text


@pytest.mark.parametrize("field,value", [("period_s", "4"), ("learning_rate", "0.1"), ("batch_size", "32"),
                                         ("batch_size", 32.5), ("batch_size", True), ("deterministic", "yes"),
                                         ("deterministic", 1), ("aggregation", 1)])
def test_a_json_value_of_the_wrong_type_is_refused_not_converted(field, value):
    with pytest.raises(MlitbError) as err:
        parse_project_spec({"name": "p", "network": TINY_NETWORK, "hyper": {field: value}})
    assert err.value.code.name == "INVALID_HYPER" and field in err.value.detail


def test_numbers_of_the_right_json_type_are_accepted_and_an_integer_is_a_number():
    spec = parse_project_spec({"name": "p", "network": TINY_NETWORK,
                               "hyper": {"period_s": 4, "learning_rate": 0.5, "batch_size": 16, "deterministic": True}})
    assert spec.hyper.period_s == 4.0 and isinstance(spec.hyper.period_s, float) and spec.hyper.deterministic is True


@pytest.mark.parametrize("field,value", [("seed", "4"), ("private", "yes"), ("private", 1)])
def test_the_project_fields_beside_hyper_are_not_coerced_either(field, value):
    with pytest.raises(MlitbError) as err:
        parse_project_spec({"name": "p", "network": TINY_NETWORK, field: value})
    assert err.value.code.name == "INVALID_REQUEST"


def test_a_nested_model_field_gets_a_row_per_inner_field():
    from typing import Literal

    from pydantic import ConfigDict

    class Codec(BaseModel):
        kind: Literal["dense", "topk"] = Field("dense", description="payload kind")
        density: float = Field(0.01, gt=0, le=1, description="share of coordinates sent")

    class Wider(Hyper):
        model_config = ConfigDict(extra="forbid", strict=True)
        codec: Codec = Field(default_factory=Codec, description="how updates travel")
        budget: int | None = Field(None, ge=1, description="optional cap")

    text = hyper_docs.render(Wider)
    assert "| `codec` | object |" in text and "the fields below | how updates travel |" in text
    assert '| `codec.kind` | string | `"dense"` | `"dense"`, `"topk"` | payload kind |' in text
    assert "| `codec.density` | number | `0.01` | (0, 1] | share of coordinates sent |" in text
    assert "| `budget` | integer or null | `null` | [1, ∞) (integers) or `null` | optional cap |" in text

"""Schema-driven test of the REST API from its own OpenAPI document: no 5xx, and every response conforms.

Schemathesis (v4) generates schema-valid and schema-invalid requests for every operation,
sends them to the app in-process (ASGI) and runs its response checks: no server error, the
response body and headers conform to the document, schema-invalid data is refused, a
deleted resource is gone, ... One project exists first, and some requests name it (with
and without its owner token) so the routes get past their 404. Left out of the main test:
`positive_data_acceptance` expects every schema-valid request to be accepted, but networks
and hyper-parameters are checked beyond what the document can say (layer grammar, shapes,
the final softmax) and such a refusal is a documented 422; status-code and content-type
conformance are the separate, expected-to-fail test at the end.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the [dev] extra")
from schemathesis import checks  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402

from mlitb.config import Settings  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.server.app import create_app  # noqa: E402
from tests.helpers import zip_of  # noqa: E402

def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (28, 28), value).save(buf, "PNG")
    return buf.getvalue()


# Upload bodies for PUT .../data/{split}: arbitrary bytes, and zips good and hostile
schemathesis.openapi.media_type("application/zip", st.one_of(
    st.binary(max_size=2048),
    st.just(zip_of({"a/1.png": _png(1), "b/2.png": _png(2)})),
    st.just(zip_of({"../../evil.png": _png(1)})),
    st.just(zip_of({"a/1.png": b"\0" * 200_000})),
    st.builds(lambda names: zip_of({n: _png(7) for n in names}),
              st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4)),
))

EXAMPLES_PER_OPERATION = 100
BOUNDED = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
NOT_CHECKED = [checks.positive_data_acceptance, checks.status_code_conformance, checks.content_type_conformance]


def fuzz_api(tmp_path, on_case) -> None:
    """Run `on_case(case)` on generated requests for every operation, DELETE last."""
    app = create_app(Settings(data_dir=tmp_path))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        with asgi.get_client(app) as client:
            made = client.post("/api/projects", json={"name": "fuzz", "dataset": "mnist", "network": PAPER_NETWORK})
            assert made.status_code == 201, made.text
        project = made.json()
        owner = {"Authorization": f"Bearer {project['owner_token']}"} if project.get("owner_token") else None
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9, [f"{op.method} {op.path}" for op in operations]
        for operation in sorted(operations, key=lambda op: op.method.lower() == "delete"):
            strategies = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
            if "{project_id}" in operation.path:
                pinned = {"project_id": project["id"]}
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned))
                strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=pinned, headers=owner))

            @BOUNDED
            @given(case=st.one_of(strategies))
            def fuzz(case):
                on_case(case)

            fuzz()
    finally:
        asgi.shutdown_lifespans()


def test_every_operation_answers_without_a_server_error_and_conforms_to_the_openapi_document(tmp_path, tally):
    counts = tally("REST requests (schemathesis)")

    def on_case(case):
        response = case.call_and_validate(excluded_checks=NOT_CHECKED)
        counts[str(response.status_code)] += 1
        assert response.status_code < 500

    fuzz_api(tmp_path, on_case)
    assert sum(counts.values()) >= 9 * 20
    assert not any(code.startswith("5") for code in counts)


def test_every_status_code_and_content_type_the_api_returns_is_documented(tmp_path):
    def on_case(case):
        case.call_and_validate(checks=[checks.status_code_conformance, checks.content_type_conformance])

    fuzz_api(tmp_path, on_case)

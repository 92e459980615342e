"""The op schema (backend/op_schema.py): the one declaration of every request field, which the
backend checks requests against and the add-on's settings, the CLI and the docs derive from."""
import dataclasses
import io
import os
import re
from contextlib import redirect_stdout

import pytest

from backend import op_schema
from backend.serve import ops
from backend.serve.job import RequestError
from backend.serve.session import Session
from backend.__main__ import main as cli_main
from lion_blender import wire

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_defaults_fill_what_a_request_leaves_out():
    values = op_schema.parse("variations", {"count": 2})
    assert values["count"] == 2 and values["similarity"] == 0.7 and values["tau"] is None
    assert values["steps"] == 25 and values["sampler"] == "ddim" and values["model"] is None
    assert op_schema.parse("sample", {})["center"] == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("op, params, message", [
    ("variations", {"count": True}, "count must be an integer in 1..64"),
    ("variations", {"count": 2.0}, "count must be an integer"),
    ("variations", {"count": 65}, "1..64"),
    ("variations", {"similarity": float("nan")}, "similarity must be a number in [0, 1]"),
    ("variations", {"similarity": 10**400}, "similarity must be a number"),
    ("variations", {"similarity": "high"}, "similarity"),
    ("variations", {"tau": 5, "similarity": 0.5}, "not both"),
    ("variations", {"similarty": 0.5}, "takes no field 'similarty'"),
    ("sample", {"center": [0, 0]}, "center must be three finite numbers"),
    ("sample", {"center": [0, 0, float("inf")]}, "center"),
    ("sample", {"center": "origin"}, "center"),
    ("sample", {"sampler": "euler"}, "sampler must be one of ddim, ddpm"),
    ("sample", {"category": ["chair"]}, "category must be text"),
    ("sample", {"model": "x" * 201}, "model must be text of at most 200"),
    ("voxel_guided", {}, "needs the field voxel_size"),
    ("hello", {"verbose": True}, "hello takes no field"),
])
def test_bad_fields_are_refused_by_name(op, params, message):
    with pytest.raises(op_schema.SchemaError, match=re.escape(message)):
        op_schema.parse(op, params)


def test_step_fields_are_bounded_by_the_models_own_steps():
    assert op_schema.parse("variations", {"tau": 900})["tau"] == 900  # T unknown: only the declared bound
    with pytest.raises(op_schema.SchemaError, match=r"tau must be an integer in 1\.\.500"):
        op_schema.parse("variations", {"tau": 900}, num_steps=500)
    with pytest.raises(op_schema.SchemaError, match=r"steps must be an integer in 1\.\.100"):
        op_schema.parse("sample", {"steps": 101}, num_steps=100)
    with pytest.raises(op_schema.SchemaError, match=r"steps must be an integer in 1\.\.1000"):
        op_schema.parse("sample", {"steps": 1001}, num_steps=4000)


def test_every_op_the_backend_serves_is_declared():
    assert set(ops.OPS) == set(op_schema.OPS)


def test_the_protocol_docs_carry_the_schemas_tables():
    with open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8") as f:
        text = f.read()
    generated = text.split("<!-- op_schema: begin -->\n", 1)[1].split("<!-- op_schema: end -->", 1)[0]
    assert generated == op_schema.markdown(), "run `python -m backend.op_schema` and paste it into docs/protocol.md"


def cli_help(command):
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        cli_main([command, "--help"])
    return " ".join(out.getvalue().split())  # argparse wraps lines


def test_a_bound_changed_in_the_schema_reaches_addon_backend_and_cli(monkeypatch):
    count = op_schema.field("variations", "count")
    monkeypatch.setitem(op_schema.OPS["variations"], "count", dataclasses.replace(count, maximum=7, default=3))
    # the add-on's Count setting (lion_blender/settings.py builds its property from these)
    assert wire.property_bounds("variations", "count") == {"default": 3, "min": 1, "max": 7}
    # the backend's check, before any model is loaded
    with pytest.raises(RequestError, match=r"count must be an integer in 1\.\.7, got 8"):
        ops.run(Session(), "variations", {"count": 8}, {}, None)
    # the command line's help
    assert "how many shapes; 1..7 (default 3)" in cli_help("variations")


def test_the_cli_offers_the_schemas_fields_with_their_limits():
    text = cli_help("variations")
    assert "--similarity SIMILARITY" in text and "0..1 (default 0.7)" in text
    assert "--steps STEPS DDIM steps; 1..min(1000, T) (default 25)" in text
    assert "{ddim,ddpm}" in text
    assert "--category CATEGORY \"auto\": the input's own category" in text
    guided = cli_help("voxel-guided")
    assert "voxels along the guide's longest side; 2..128 (default 16)" in guided


def test_the_addon_and_the_backend_share_the_voxel_guide_limit():
    from backend import voxels
    from lion_blender import voxel_guide

    assert voxel_guide.MAX_RESOLUTION == voxels.MAX_RESOLUTION == op_schema.GUIDE_RESOLUTION.maximum


def test_the_default_smoothing_is_the_solvers_default_sigma():
    from backend.sap.poisson import DEFAULT_SIGMA

    assert op_schema.field("reconstruct", "smoothing").default == DEFAULT_SIGMA

"""The sidebar's draw code, run against a layout that records what it is asked to show.

Background Blender draws no interface, so the panels' draw() methods are called with a
stand-in layout that keeps every label, property and button; buttons only accept the
properties their operator really has, so a panel can never set a misspelt setting.
"""
import bpy
import pytest

from test_actions import add_mesh, select
from test_jobs import long_job, poll_until


class RecordingLayout:
    """Records label texts, prop names, progress bars and operator buttons of a draw()."""

    def __init__(self, record=None):
        self.record = record if record is not None else {"labels": [], "props": [], "progress": [], "buttons": []}
        self.enabled = True

    def _child(self, *args, **kwargs):
        return RecordingLayout(self.record)

    row = column = box = split = _child

    def separator(self, **kwargs):
        pass

    def label(self, text="", **kwargs):
        self.record["labels"].append(text)

    def prop(self, data, name, **kwargs):
        self.record["props"].append(name)
        assert name.startswith('["') or name in data.bl_rna.properties, f"no property {name!r} on {data}"

    def progress(self, factor=0.0, type="BAR", text=""):
        self.record["progress"].append((factor, text))

    def operator(self, idname, text="", **kwargs):
        button = OperatorButton(idname)
        self.record["buttons"].append((idname, text or idname, button, self.enabled))
        return button


class OperatorButton:
    """The properties of one button; only names the operator defines are accepted."""

    def __init__(self, idname):
        module, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, module), name).get_rna_type()
        object.__setattr__(self, "names", set(rna.properties.keys()))
        object.__setattr__(self, "values", {})

    def __setattr__(self, name, value):
        assert name in self.names, f"the operator has no property {name!r}"
        self.values[name] = value


def draw(panel_name):
    layout = RecordingLayout()
    panel = getattr(bpy.types, panel_name)
    panel.draw(type("Drawn", (), {"layout": layout})(), bpy.context)
    return layout.record


def buttons(record):
    return {idname: (button.values, enabled) for idname, _, button, enabled in record["buttons"]}


PANELS = ("LION_PT_backend", "LION_PT_generate", "LION_PT_interpolate", "LION_PT_voxel_guide", "LION_PT_edit")


def test_every_panel_draws_and_buttons_take_the_scene_settings(lion, scene):
    settings = scene.lion
    settings.count, settings.seed, settings.similarity, settings.voxel_resolution = 5, 11, 0.25, 20
    drawn = {name: draw(name) for name in PANELS}
    generate = buttons(drawn["LION_PT_generate"])
    values, enabled = generate["lion.variations"]
    assert enabled and values["count"] == 5 and values["seed"] == 11 and values["similarity"] == pytest.approx(0.25)
    assert values["model"] == "" and values["output"] == "POINTS"
    assert buttons(drawn["LION_PT_voxel_guide"])["lion.voxel_guided"][0]["resolution"] == 20
    assert "lion.interpolate" in buttons(drawn["LION_PT_interpolate"])
    assert {"lion.regenerate_region", "lion.reconstruct"} <= set(buttons(drawn["LION_PT_edit"]))


def test_generate_panel_offers_the_models_categories(lion, scene):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    from importlib import import_module

    settings = scene.lion
    items = import_module(f"{lion.__name__}.settings").category_items(settings, bpy.context)
    assert [identifier for identifier, _, _ in items] == ["any", "chair", "table"]
    settings.category_choice, settings.guidance = "table", 4.0
    record = draw("LION_PT_generate")
    assert {"category_choice", "guidance"} <= set(record["props"])
    values, _ = buttons(record)["lion.generate"]
    assert values["category"] == "table" and values["guidance"] == pytest.approx(4.0)


def test_a_model_without_categories_shows_no_menu(lion, scene):
    from importlib import import_module

    settings_module = import_module(f"{lion.__name__}.settings")
    hello = {"models": [{"name": "plain", "path": "/models/plain.safetensors", "categories": []},
                        {"name": "kinds", "path": "/models/kinds.safetensors", "categories": ["mug"]}]}
    client = type("Client", (), {"hello": hello})()
    assert settings_module.model_categories(scene.lion, client) == []  # the default: the first model
    assert settings_module.model_categories(type("Chosen", (), {"model": "kinds"})(), client) == ["mug"]
    assert settings_module.model_categories(scene.lion, type("Client", (), {"hello": None})()) == []


def test_status_line_says_ready_with_the_model(lion, scene):
    assert bpy.ops.lion.backend_connect() == {"FINISHED"}
    status = draw("LION_PT_backend")["labels"][0]
    assert status.startswith("Backend: ready on cpu with tiny-untrained")


def test_a_running_job_shows_progress_and_cancel_and_disables_the_actions(lion, scene):
    job = long_job(lion)
    try:
        poll_until(job, lambda: job.request.progress is not None or not job.running)
        record = draw("LION_PT_backend")
        (fraction, text), = record["progress"]
        assert 0.0 <= fraction < 1.0 and text.startswith("Generate: ")
        assert "lion.cancel_job" in buttons(record)
        assert buttons(draw("LION_PT_generate"))["lion.generate"][1] is False
        assert bpy.ops.lion.cancel_job() == {"FINISHED"}
    finally:
        job.cancel()
    record = draw("LION_PT_backend")
    assert record["progress"] == [] and "Generate: cancelled" in record["labels"]


def test_interpolation_panel_shows_the_slider_and_bake_for_an_interpolation(lion, scene):
    select(add_mesh("cube"))
    assert "lion.bake_interpolation" not in buttons(draw("LION_PT_interpolate"))
    bpy.context.active_object["lion_blend"] = 0.0
    record = draw("LION_PT_interpolate")
    assert '["lion_blend"]' in record["props"] and "lion.bake_interpolation" in buttons(record)


# Each scene setting and the request field it is sent as ("guide": made by the add-on itself).
SETTING_FIELDS = {"count": ("variations", "count"), "steps": ("variations", "steps"),
                  "similarity": ("variations", "similarity"), "frames": ("interpolate", "frames"),
                  "mesh_resolution": ("reconstruct", "resolution"), "mesh_smoothing": ("reconstruct", "smoothing"),
                  "guidance": ("sample", "guidance"),
                  "size": ("sample", "size"), "voxel_resolution": ("guide", "resolution")}


def test_settings_take_default_and_limits_from_the_backends_op_schema(lion, scene):
    from importlib import import_module

    schema = import_module(f"{lion.__name__}.wire").op_schema  # the copy the extension carries
    properties = scene.lion.bl_rna.properties
    for setting, (op, name) in SETTING_FIELDS.items():
        spec = schema.GUIDE_RESOLUTION if op == "guide" else schema.field(op, name)
        prop = properties[setting]
        assert (prop.default, prop.hard_min) == pytest.approx((spec.default, spec.minimum)), setting
        assert prop.hard_max == pytest.approx(spec.maximum), setting

"""LION Shape Generator: a Blender extension that generates 3D shapes with LION.

The heavy model runs in a backend process (backend/serve.py) that this add-on starts with a
Python environment that has PyTorch; Blender's own Python never imports torch.
"""


def _modules():
    # Imported here, not at the top, so the package imports without Blender and its bpy-free
    # modules (layout.py) can be tested in a plain Python.
    from . import operators, preferences, settings, ui

    return (preferences, settings, operators, ui)


def register():
    for module in _modules():
        module.register()


def unregister():
    from . import session

    session.shutdown()
    for module in reversed(_modules()):
        module.unregister()

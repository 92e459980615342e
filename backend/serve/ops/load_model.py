"""load_model: load (or keep) a model and describe it."""
from backend.serve import fields


def run(session, params, arrays, context):
    _, name, model, metadata = fields.load(session, "load_model", params)
    return {"model": name, "config": model.config.to_dict(), "parameters": model.parameter_counts(),
            "metadata": metadata, "categories": model.categories, "num_steps": model.config.diffusion.num_steps}, None

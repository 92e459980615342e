"""A request's fields: checked once against backend/op_schema.py, then against the model's own
number of diffusion steps, and turned into what the pipelines take."""
from backend import op_schema
from backend.serve.job import RequestError


def parse(op, params):
    """The op's fields, checked against the op schema (unknown fields refused by name)."""
    try:
        return op_schema.parse(op, params)
    except op_schema.SchemaError as exc:
        raise RequestError(str(exc)) from None


def load(session, op, params):
    """(fields, model name, model, metadata): the fields checked, the model loaded, and the
    fields that its number of diffusion steps T bounds checked against that T."""
    request = parse(op, params)
    name, model, metadata = session.model(request["model"])
    num_steps = model.config.diffusion.num_steps
    for field_name, spec in op_schema.OPS[op].items():
        if spec.capped_by_steps and request[field_name] is not None:
            try:
                spec.parse(request[field_name], num_steps)
            except op_schema.SchemaError as exc:
                raise RequestError(str(exc)) from None
    return request, name, model, metadata


def tau(request, model):
    """The diffusion step a variation starts from: `tau`, else `similarity` mapped onto the
    model's own T."""
    from backend.pipelines import tau_from_similarity

    if request["tau"] is not None:
        return request["tau"]
    return tau_from_similarity(request["similarity"], model.config.diffusion.num_steps)


def sampler(request):
    from backend.pipelines import SamplerSettings

    return SamplerSettings(sampler=request["sampler"], steps=request["steps"], eta=request["eta"])


def generator(request):
    """A CPU generator: the same seed gives the same shapes on every device."""
    import torch

    return torch.Generator().manual_seed(request["seed"])


def progress(context):
    return lambda step, total, stage: context.progress(step, total, stage)


def check_category(category, model, name):
    if category != "any" and category not in model.categories:
        known = ", ".join(["any", *model.categories])
        raise RequestError(f"category must be one of {known} for model {name}, got {category!r}")


def generation_header(name, request):
    """The reply fields every generation op shares."""
    return {"model": name, **{key: request[key] for key in ("seed", "sampler", "steps", "eta")}}


def kept_category(request, model, name, shape, encoder=None):
    """The category variations of `shape` (model space) keep: the request's, or for "auto" the
    shape's own as the model infers it ("any" for a model without categories)."""
    from backend import pipelines

    category = request["category"]
    if category == "auto":
        category = pipelines.shape_category(model, shape, encoder) or "any"
    check_category(category, model, name)
    return category


def condition(category):
    """The pipelines' category argument: None for "any" (unconditioned)."""
    return None if category == "any" else category

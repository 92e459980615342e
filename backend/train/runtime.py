"""What every training stage shares: processes, data order, randomness, checkpoints, logs.

Exact resume rests on three facts: batches are a pure function of (seed, step) (the sampler
shuffles by epoch, the dataset subsamples by epoch, and a resumed run skips to its step); the
random numbers of step s come from a generator seeded by (seed, rank, s), so no RNG state
needs saving; and the training state (weights, optimizer, EMA, step) is saved whole.
"""
import argparse
import json
import logging
import math
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as torch_dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

log = logging.getLogger("lion.train")

STATE_FILE = "state.pt"
MODEL_FILE = "model.safetensors"


class Distributed:
    """This process's place in a torchrun job (or a lone process: rank 0 of 1)."""

    def __init__(self, device_choice="auto"):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device_choice in ("auto", "cuda")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.world_size > 1:
            torch_dist.init_process_group("nccl" if use_cuda else "gloo")

    @property
    def is_main(self):
        return self.rank == 0

    def wrap(self, module):
        """The module for training: DDP across processes, itself when alone."""
        if self.world_size == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def barrier(self):
        if self.world_size > 1:
            torch_dist.barrier()

    def close(self):
        if self.world_size > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def step_generator(seed, rank, step, device):
    """The generator for all randomness of one training step: a pure function of its inputs."""
    words = np.random.SeedSequence([seed, rank, step]).generate_state(2, dtype=np.uint32)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(words[0]) << 32 | int(words[1]))
    return generator


def seed_step(seed, rank, step):
    """Seed torch's global generators for one step (dropout draws from them)."""
    words = np.random.SeedSequence([seed, rank, step, 1]).generate_state(2, dtype=np.uint32)
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))


class BatchOrder:
    """Batches as a pure function of the step: epoch e shuffles with (seed, e), this rank takes
    its share, and step s is batch s mod steps_per_epoch of epoch s div steps_per_epoch."""

    def __init__(self, dataset, batch_size, seed, dist):
        self.dataset, self.batch_size = dataset, batch_size
        self.sampler = DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank,
                                          shuffle=True, seed=seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"the dataset has {len(dataset)} shapes: too few for batch size {batch_size} "
                             f"on {dist.world_size} process(es)")
        self._epoch, self._indices = None, None

    def batch(self, step):
        """float32 [batch_size, N, 3]: this rank's batch for global step `step`."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self.dataset.set_epoch(epoch)
            self._epoch, self._indices = epoch, list(self.sampler)
        chosen = self._indices[position * self.batch_size:(position + 1) * self.batch_size]
        return torch.stack([self.dataset[i] for i in chosen])


class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers.

    With `step` given to `update`, the decay warms up as min(decay, (1 + step)/(10 + step)),
    so that a short run's average is not dominated by the initial weights (a plain 0.9999
    still gives them half the weight after 7000 steps)."""

    def __init__(self, module, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def decay_at(self, step):
        return self.decay if step is None else min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, module, step=None):
        decay = self.decay_at(step)
        for name, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[name].lerp_(value, 1.0 - decay)
            else:
                self.shadow[name].copy_(value)

    def copy_to(self, module):
        module.load_state_dict(self.shadow)

    def state_dict(self):
        return self.shadow

    def load_state_dict(self, shadow):
        self.shadow = shadow


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM (torchrun, schedulers) asks the loop to stop at the next step
    boundary, so the checkpoint written on the way out is a consistent state, never half a step."""

    def __init__(self):
        self.requested = False
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._request)

    def _request(self, number, frame):
        if self.requested:  # a second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        log.warning("stop requested: finishing this step and saving a checkpoint (Ctrl-C again to abort)")
        self.requested = True

    def agreed(self, dist):
        """Whether any rank was asked to stop: all ranks must leave the loop at the same step."""
        if dist.world_size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)], device=dist.device)
        torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
        return bool(flag.item())


def lr_factor(decay: str, step: int, total: int) -> float:
    """The learning rate of 0-based step `step` of `total`, over the base rate: 1 throughout
    ("constant"), or from 1 down to 0 along half a cosine ("cosine"). A function of the step
    alone, so a resumed run continues on the same curve."""
    if decay == "constant":
        return 1.0
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    raise ValueError(f"decay must be 'constant' or 'cosine', got {decay!r}")


def keep_base_lr(optimizers):
    """Record each parameter group's rate as its base rate, the one lr_factor scales (saved with
    the optimizer, so a resumed run keeps it)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]


def scale_lr(optimizers, factor):
    """Set every parameter group's rate to its base rate times `factor` (lr_factor's)."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor


def check_finite(loss, step):
    """Stop the run on a NaN or infinite loss, before it reaches the weights."""
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; the last checkpoint is kept")


def optimize(optimizer, loss, parameters, grad_clip, scalars, norm_name="grad_norm"):
    """One update of `optimizer` on `loss`: zero the gradients, backpropagate, clip the gradient
    norm of `parameters` to `grad_clip` when it is > 0 (recording the norm before clipping as
    scalars[norm_name]), step. Returns `scalars`. A stage with several optimizers calls it once
    for each."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        scalars[norm_name] = torch.nn.utils.clip_grad_norm_(parameters, grad_clip).item()
    optimizer.step()
    return scalars


def run_training(args, dist, parts, replicated, train_step, save):
    """A stage's training loop, from step 0 or (with --resume) from its saved state.

    parts: name -> module, optimizer or EMA: the training state, saved whole and restored.
    replicated: the module whose data-parallel replicas must stay identical (checked at each
    checkpoint). train_step(step) -> scalars: one step. save(step): the stage's own outputs
    (model file, render), written by the main rank at each checkpoint after the state.
    Returns the process exit code (run_steps)."""
    step = restore_state(args, dist, parts)
    run_log = RunLog(args.out, args.steps, step, dist.is_main)

    def checkpoint(step):
        check_replicas(replicated, dist, run_log, step)
        if dist.is_main:
            save_state(args.out, step, parts)
            save(step)
        dist.barrier()

    return run_steps(args, dist, run_log, step, train_step, checkpoint)


def run_steps(args, dist, run_log, step, train_step, checkpoint):
    """The loop every stage shares: `train_step(step) -> scalars` until args.steps, with
    `checkpoint(step)` every args.checkpoint_every steps, at the end, and when asked to stop.
    Closes the run log and the process group on the way out. Returns the process exit code:
    0 when done, 130 when stopped early."""
    stop = StopRequest()
    try:
        while step < args.steps:
            scalars = train_step(step)
            step += 1
            run_log.step(step, scalars if step % args.log_every == 0 or step == args.steps else {})
            if step % args.checkpoint_every == 0 or step == args.steps:
                checkpoint(step)
            if stop.agreed(dist):
                if step % args.checkpoint_every and step != args.steps:
                    checkpoint(step)
                log.warning("stopped at step %d; continue with --resume", step)
                return 130
        return 0
    finally:
        run_log.close()
        dist.close()


def replica_checksums(module, dist):
    """Per-rank [sum, sum of squares, position-weighted sum] of the module's weights, gathered
    on every rank: equal rows mean the replicas hold identical weights."""
    values = torch.cat([p.detach().double().flatten() for p in module.state_dict().values()
                        if p.dtype.is_floating_point])
    weights = torch.arange(1, values.numel() + 1, dtype=torch.float64, device=values.device) / values.numel()
    local = torch.stack([values.sum(), values.square().sum(), (values * weights).sum()])
    if dist.world_size == 1:
        return [local.tolist()]
    gathered = [torch.zeros_like(local) for _ in range(dist.world_size)]
    torch_dist.all_gather(gathered, local)
    return [g.tolist() for g in gathered]


def check_replicas(module, dist, run_log, step):
    """Fail loudly if data-parallel replicas have drifted apart (a bug, or a broken node)."""
    checksums = replica_checksums(module, dist)
    run_log.record({"step": step, "replica_checksums": checksums})
    if any(row != checksums[0] for row in checksums[1:]):
        raise RuntimeError(f"step {step}: the {dist.world_size} replicas hold different weights: {checksums}")


def save_render(run_dir, kind, step, clouds, columns):
    """RUN/renders/KIND_STEP.png: a contact sheet of point clouds (tensors [N, 3], any device)."""
    from backend.render import contact_sheet

    os.makedirs(os.path.join(run_dir, "renders"), exist_ok=True)
    path = os.path.join(run_dir, "renders", f"{kind}_{step:07d}.png")
    contact_sheet([cloud.detach().cpu().numpy() for cloud in clouds], path, columns=columns, true_scale=True)
    return path


def save_state(run_dir, step, parts):
    """Write the training state atomically (a crash mid-write leaves the previous one intact):
    the step and the state_dict of each of `parts` (name -> module, optimizer, EMA)."""
    path = os.path.join(run_dir, STATE_FILE)
    temporary = path + ".tmp"
    torch.save({"step": step, **{name: part.state_dict() for name, part in parts.items()}}, temporary)
    os.replace(temporary, path)


def restore_state(args, dist, parts):
    """The step a stage starts from: 0, or with --resume the saved step, after loading each of
    `parts` from the saved state (read without executing code: weights_only). Also records
    the run's arguments."""
    step = 0
    if args.resume:
        path = os.path.join(args.out, STATE_FILE)
        if not os.path.isfile(path):
            raise SystemExit(_no_run_to_resume(args.out))
        state = torch.load(path, map_location=dist.device, weights_only=True)
        for name, part in parts.items():
            part.load_state_dict(state[name])
        step = int(state["step"])
    save_arguments(args, dist)
    return step


# Facts about the training data that later stages copy from the model they start from.
INHERITED_METADATA = ("typical_half_extent",)


def data_metadata(dataset, max_shapes=256):
    """What the server needs to know of the training shapes: `typical_half_extent`, the median
    half of a normalized shape's longest side, so that an artist's mesh is scaled to match."""
    count = min(len(dataset), max_shapes)
    extents = [float((item.max(0).values - item.min(0).values).max() / 2) for item in map(dataset.__getitem__, range(count))]
    return {"typical_half_extent": float(np.median(extents))}


def trained_parts(source_metadata, part):
    """The `trained_parts` of a model that a stage made by training `part` on a source model:
    the source's parts (a VAE when it does not say), then `part` once."""
    parts = [name for name in source_metadata.get("trained_parts", ["vae"]) if name != part]
    return parts + [part]


def inherited_metadata(source_metadata):
    return {key: source_metadata[key] for key in INHERITED_METADATA if key in source_metadata}


def atomic_save_model(run_dir, model, **kwargs):
    """Save the inference checkpoint (model.safetensors) atomically."""
    from backend.checkpoint import save_model

    path = os.path.join(run_dir, MODEL_FILE)
    temporary = path + ".tmp.safetensors"
    save_model(temporary, model, **kwargs)
    os.replace(temporary, path)
    return path


def _forget_steps_after(path, step):
    """Drop the entries of log.jsonl past `step`: a resumed run repeats them from its checkpoint."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.readlines()
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) != len(lines):
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            f.writelines(kept)
        os.replace(temporary, path)


def _logged_step(line):
    """The step of a log.jsonl line; a line without one (or torn by a crash) counts as past all."""
    try:
        entry = json.loads(line)
    except ValueError:
        return math.inf
    step = entry.get("step", 0) if isinstance(entry, dict) else 0
    return step if isinstance(step, (int, float)) else 0


class RunLog:
    """Rank 0's view of a run: console progress, TensorBoard scalars and a JSON-lines log."""

    def __init__(self, run_dir, total_steps, start_step, enabled):
        self.enabled = enabled
        self.run_dir = run_dir
        self._writer = self._progress = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        self._writer = SummaryWriter(os.path.join(run_dir, "tensorboard"), purge_step=start_step)
        path = os.path.join(run_dir, "log.jsonl")
        _forget_steps_after(path, start_step)
        self._jsonl = open(path, "a")
        self._progress = tqdm(total=total_steps, initial=start_step, unit="it", dynamic_ncols=True,
                              file=sys.stderr, disable=None)

    def step(self, step, scalars):
        if not self.enabled:
            return
        self._progress.update(1)
        if not scalars:
            return
        self._progress.set_postfix({k: f"{v:.4g}" for k, v in scalars.items() if k in ("loss", "kl_weight")})
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
        self._jsonl.flush()

    def record(self, entry):
        """Append a free-form entry to log.jsonl."""
        if self.enabled:
            self._jsonl.write(json.dumps(entry) + "\n")
            self._jsonl.flush()

    def close(self):
        if self.enabled:
            self._progress.close()
            self._writer.close()
            self._jsonl.close()


def stage_parser(stage, description, grad_clip):
    """The argument parser of `python -m backend.train STAGE`: the options every stage takes,
    the data options, and --grad-clip with the stage's default; the stage adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m backend.train {stage}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser)
    data_arguments(parser)
    parser.add_argument("--grad-clip", type=float, default=grad_clip, help="max gradient norm (0: off)")
    return parser


def positive_int(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def common_arguments(parser: argparse.ArgumentParser):
    """Options every stage takes."""
    parser.add_argument("--out", required=True, help="run folder: checkpoints, logs, renders")
    parser.add_argument("--steps", type=positive_int, default=10000, help="total optimizer steps")
    parser.add_argument("--batch-size", type=int, default=16, help="shapes per step and process")
    parser.add_argument("--lr", type=float, help="learning rate (default: the stage's)")
    parser.add_argument("--seed", type=int, default=0, help="seeds data order and all randomness")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between checkpoints (each also renders samples)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between scalar logs")
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out exactly")


def data_arguments(parser: argparse.ArgumentParser):
    parser.add_argument("--data", default="procedural",
                        help="'procedural[:cat1,cat2]', 'shapenet:ROOT' (PointFlow's PC15k folders) or a folder of meshes")
    parser.add_argument("--categories", default="chair", help="ShapeNet categories: names, synset ids, or 'all'")
    parser.add_argument("--shapes-per-category", type=int, default=100, help="procedural data: shapes per category")
    parser.add_argument("--normalization", choices=("global", "shape_box"), default="global")


def build_dataset(args, points_per_shape, normalization=None, cache_dir=None):
    """The training dataset named by --data; `normalization` overrides --normalization."""
    from backend.data.datasets import MeshFolderDataset, ProceduralDataset, ShapeNetDataset
    from backend.data.procedural import CATEGORIES

    norm = normalization if normalization is not None else args.normalization
    kwargs = dict(points_per_shape=points_per_shape, normalization=norm, seed=args.seed)
    if args.data == "procedural" or args.data.startswith("procedural:"):
        categories = args.data.split(":", 1)[1].split(",") if ":" in args.data else list(CATEGORIES)
        return ProceduralDataset(categories, args.shapes_per_category, **kwargs)
    if args.data.startswith("shapenet:"):
        categories = args.categories.split(",") if "," in args.categories else args.categories
        return ShapeNetDataset(args.data.split(":", 1)[1], categories, "train", **kwargs)
    if os.path.isdir(args.data):
        return MeshFolderDataset(args.data, cache_dir or os.path.join(args.out, "mesh_cache"), **kwargs)
    raise ValueError(f"--data {args.data!r} is neither procedural, shapenet:ROOT nor a folder")


def start_run(args):
    """The first lines of every stage: this process's place in the job, logging, the run folder."""
    dist = Distributed(args.device)
    setup_logging(dist)
    prepare_run_dir(args, dist)
    return dist


def load_trained_model(path, args, dist):
    """(model, metadata, dataset) to continue from an earlier stage's model: the training data
    is normalized as that model's was."""
    from backend.checkpoint import load_model

    model, metadata = load_model(path, dist.device)
    if model.normalization is None:
        raise SystemExit(f"{path} records no data normalization; train its VAE with this code first")
    return model, metadata, build_dataset(args, model.config.vae.num_points, normalization=model.normalization)


def prepare_run_dir(args, dist):
    if dist.is_main:
        os.makedirs(args.out, exist_ok=True)
        holds_run = os.path.exists(os.path.join(args.out, STATE_FILE))
        if not args.resume and holds_run:
            raise SystemExit(f"{args.out} already holds a run: pass --resume to continue it, or choose another --out")
        if args.resume and not holds_run:
            raise SystemExit(_no_run_to_resume(args.out))
        remove_partial_writes(args.out)
    dist.barrier()


def _no_run_to_resume(run_dir):
    return f"--resume: {run_dir} holds no run to continue (no {STATE_FILE}); start without --resume"


# What an atomic write leaves behind when the process dies mid-write (save_state, the model
# files, backend.checkpoint's .checkpoint-*.tmp, the prior stage's encodings).
PARTIAL_WRITE_SUFFIXES = (".tmp", ".tmp.safetensors")


def remove_partial_writes(run_dir):
    """Delete the half-written files an interrupted run left in `run_dir` (not below it)."""
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if name.endswith(PARTIAL_WRITE_SUFFIXES) and os.path.isfile(path):
            os.remove(path)
            logging.getLogger(__name__).info("removed %s, left by an interrupted write", path)


def save_arguments(args, dist):
    if dist.is_main:
        with open(os.path.join(args.out, "args.json"), "w") as f:
            json.dump(vars(args), f, indent=2)


def linear_ramp(step, start_value, end_value, ramp_steps):
    """start_value at step 0, end_value from `ramp_steps` on, linear between."""
    if ramp_steps <= 0:
        return end_value
    fraction = min(1.0, step / ramp_steps)
    return start_value + (end_value - start_value) * fraction


def setup_logging(dist):
    logging.basicConfig(level=logging.INFO if dist.is_main else logging.WARNING, stream=sys.stderr,
                        format=f"%(asctime)s rank{dist.rank} %(levelname)s %(name)s: %(message)s")

"""Training: `train_and_evaluate(config, workdir)`, the unit `train.py` calls.

The train state is a plain dict pytree `{"step", "params", "batch_stats", "opt_state"}`. Shapes come
from `jax.eval_shape`; the state is created already sharded on a `(data, fsdp)` mesh (see
`i3d_jax.sharding`) and updated by one `jax.jit` step with explicit in/out shardings and the state
donated.

BatchNorm statistics (`config.bn.group_size`):

- 0 (default): over the global batch. Under `jit` with a sharded batch XLA computes them across
  devices by itself; the model has no `bn_axis_name`.
- k > 0: over groups of k consecutive examples of the global batch, like the release (64 replicas x
  6 clips, statistics per replica). The step runs the forward pass in `jax.shard_map` over a view of
  the same devices as `(groups, bn)`, the model built with `bn_axis_name="bn"`: a group spanning m
  devices averages its statistics over the `bn` axis (size m); several groups on one device are
  `vmap`ped. Running averages are then averaged over all groups. Requires k to divide the per-device
  batch or be a multiple of it.

Mixed precision: `config.model.dtype` is the compute dtype (bfloat16 by default); parameters,
BatchNorm statistics, logits and the loss are float32. uint8 clips become [-1, 1] on the device.

Outputs in `workdir`: `checkpoints/` (last k, with the data iterator state), `best/` (best
validation video top-1), `metrics.jsonl`, `tb/` (TensorBoard), `metrics.png`, `eval/results.json`,
`config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from i3d_jax import schedules, sharding
from i3d_jax.data import pipeline
from i3d_jax.model import PRESETS, InceptionI3d

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
BN_AXIS = "bn"
GROUP_AXES = ("groups", BN_AXIS)


class TrainingError(RuntimeError):
    """A run stopped for a reason the user should read (non-finite loss, bad checkpoint, ...)."""


# ----------------------------------------------------------------------------- config


def _choice(config, field: str, allowed) -> None:
    value = config
    for part in field.split("."):
        value = value[part]
    if value not in allowed:
        raise ValueError(f"config.{field}={value!r} is not one of {sorted(allowed)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad field (before any data, model or device work)."""
    _choice(config, "modality", ("rgb", "flow"))
    _choice(config, "model.preset", PRESETS)
    _choice(config, "model.schedule", schedules.SCHEDULES)
    _choice(config, "model.dtype", DTYPES)
    _choice(config, "model.temporal_padding", ("zeros", "replicate"))
    _choice(config, "optimizer.name", ("sgd", "adam"))
    _choice(config, "lr.schedule", ("step", "cosine", "constant"))
    _choice(config, "init.method", ("scratch", "inflate", "pretrained"))
    _choice(config, "init.inflate_method", ("mean", "center"))
    _choice(config, "eval.protocol", ("whole", "multiview"))
    _choice(config, "eval.num_crops", (1, 3))
    positive = (
        "batch_size", "num_train_steps", "grad_accum_steps", "input.clip_length",
        "input.crop_size", "eval.batch_size", "checkpoint.keep", "log_every_steps",
        "checkpoint.every_steps", "eval.max_frames", "eval.clip_length", "eval.num_clips",
        "model.num_classes",
    )  # fmt: skip
    for field in positive:
        value = config
        for part in field.split("."):
            value = value[part]
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"config.{field}={value!r} must be a positive integer")
    if not 0.0 <= config.model.dropout_rate < 1.0:
        raise ValueError(f"config.model.dropout_rate={config.model.dropout_rate} not in [0, 1)")
    if config.batch_size % config.grad_accum_steps:
        raise ValueError(
            f"config.batch_size={config.batch_size} is not divisible by "
            f"config.grad_accum_steps={config.grad_accum_steps}"
        )
    if config.init.method != "scratch" and not config.init.source:
        raise ValueError(f"config.init.source is required with init.method={config.init.method!r}")
    if config.bn.group_size < 0:
        raise ValueError(f"config.bn.group_size={config.bn.group_size} must be >= 0")
    if config.lr.base < 0:
        raise ValueError(f"config.lr.base={config.lr.base} must be >= 0")
    need = schedules.min_frames(config.model.schedule)
    for field in ("input.clip_length", "eval.clip_length", "eval.max_frames"):
        sec, name = field.split(".")
        if config[sec][name] < need:
            raise ValueError(
                f"config.{field}={config[sec][name]} is shorter than the {need} frames pooling "
                f"schedule {config.model.schedule!r} needs"
            )
    if len(config.eval.fusion_weights) != 2:
        raise ValueError("config.eval.fusion_weights must have 2 entries (this, other)")


def check_devices(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """Batch sizes must divide over devices and processes; clear messages otherwise."""
    n_dev, n_proc = mesh.devices.size, jax.process_count()
    micro = config.batch_size // config.grad_accum_steps
    for name, size in (
        ("batch_size", config.batch_size),
        ("eval.batch_size", config.eval.batch_size),
    ):
        if size % n_proc:
            raise ValueError(f"config.{name}={size} is not divisible by {n_proc} processes")
    if micro % n_dev:
        raise ValueError(
            f"config.batch_size={config.batch_size} / grad_accum_steps={config.grad_accum_steps} "
            f"= {micro} is not divisible by the {n_dev} devices"
        )
    if config.eval.batch_size % n_dev:
        raise ValueError(
            f"config.eval.batch_size={config.eval.batch_size} is not divisible by the {n_dev} devices"
        )
    k = config.bn.group_size
    if k:
        local = micro // n_dev
        if micro % k or not (local % k == 0 or k % local == 0):
            raise ValueError(
                f"config.bn.group_size={k} must divide the per-device batch {local} or be a "
                f"multiple of it (and divide the micro-batch {micro})"
            )


# ----------------------------------------------------------------------------- model & optimizer


def build_model(config: ml_collections.ConfigDict, bn_axis_name: str | None = None):
    """The configured `InceptionI3d` (compute dtype from the config, float32 params)."""
    extra = {}
    if config.model.remat and "remat" in getattr(InceptionI3d, "__dataclass_fields__", {}):
        extra["remat"] = True  # per Inception block; else the whole forward is rematerialised
    return PRESETS[config.model.preset](
        **extra,
        num_classes=config.model.num_classes,
        schedule=config.model.schedule,
        input_channels=3 if config.modality == "rgb" else 2,
        dropout_rate=config.model.dropout_rate,
        temporal_padding=config.model.temporal_padding,
        bn_momentum=config.model.bn_momentum,
        bn_axis_name=bn_axis_name,
        dtype=DTYPES[config.model.dtype],
        param_dtype=jnp.float32,
    )


def learning_rate_fn(config: ml_collections.ConfigDict) -> optax.Schedule:
    """step -> learning rate: the paper's steps, warmup + cosine, or constant."""
    c, total = config.lr, config.num_train_steps
    if c.schedule == "step":
        main = optax.piecewise_constant_schedule(
            c.base, {int(b) - c.warmup_steps: c.decay_factor for b in c.boundaries}
        )
    elif c.schedule == "cosine":
        main = optax.cosine_decay_schedule(c.base, max(total - c.warmup_steps, 1))
    else:
        main = optax.constant_schedule(c.base)
    if c.warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(c.base / max(c.warmup_steps, 1), c.base, c.warmup_steps)
    return optax.join_schedules([warm, main], [c.warmup_steps])


def decay_mask(params: Any) -> Any:
    """True for conv/dense kernels only: BatchNorm offsets and biases get no weight decay."""
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def make_optimizer(config: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, Any]:
    lr = learning_rate_fn(config)
    o = config.optimizer
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay, mask=decay_mask))
    if o.name == "sgd":
        parts.append(optax.sgd(lr, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
        parts.append(optax.adam(lr))
    return optax.chain(*parts), lr


# ----------------------------------------------------------------------------- state


def input_shape(config: ml_collections.ConfigDict, batch: int = 1) -> tuple[int, ...]:
    c = 3 if config.modality == "rgb" else 2
    return (batch, config.input.clip_length, config.input.crop_size, config.input.crop_size, c)


def init_variables(config: ml_collections.ConfigDict, model, rng: jax.Array) -> dict:
    x = jnp.zeros(input_shape(config), jnp.float32)
    return dict(model.init({"params": rng}, x, train=False))


def merge_variables(init: dict, loaded: dict, reinit_prefixes: tuple[str, ...] = ()) -> dict:
    """Loaded values onto the initial tree; reports missing/unexpected/mismatched names.

    Paths under `reinit_prefixes` (e.g. "params/Logits") keep their initial values.
    """
    dst = traverse_util.flatten_dict(init, sep="/")
    src = traverse_util.flatten_dict(loaded, sep="/")

    def fresh(k: str) -> bool:
        return any(k.startswith(p) for p in reinit_prefixes)

    missing = sorted(k for k in dst if k not in src and not fresh(k))
    unexpected = sorted(k for k in src if k not in dst and not fresh(k))
    bad = sorted(
        f"{k}: {tuple(np.shape(src[k]))} vs {tuple(dst[k].shape)}"
        for k in dst
        if k in src and not fresh(k) and tuple(np.shape(src[k])) != tuple(dst[k].shape)
    )
    if missing or unexpected or bad:
        raise ValueError(
            f"loaded weights do not match the model: missing {missing}, unexpected {unexpected}, "
            f"shape mismatches {bad}"
        )
    out = {k: (v if fresh(k) else np.asarray(src[k]).astype(v.dtype)) for k, v in dst.items()}
    return traverse_util.unflatten_dict(out, sep="/")


def _load_2d(source: str, config: ml_collections.ConfigDict) -> dict:
    """2D Inception-v1 variables: an .npz ('/'-joined keys), "random[:seed]", or a 2D
    `load_pretrained` source (torchvision GoogLeNet)."""
    if source.startswith("random"):
        from i3d_jax.inception2d import InceptionV1

        seed = int(source.split(":")[1]) if ":" in source else 0
        m2 = InceptionV1(
            num_classes=config.model.num_classes,
            channels=build_model(config).channels,
            global_pool=build_model(config).global_pool,
            input_channels=3 if config.modality == "rgb" else 2,
        )
        size = config.input.crop_size
        x = jnp.zeros((1, size, size, m2.input_channels))
        key = jax.random.key(seed, impl="rbg")
        return jax.tree.map(np.asarray, dict(jax.jit(lambda r: m2.init(r, x, train=False))(key)))
    path = pathlib.Path(source)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"config.init.source: 2D weights file {source!r} not found")
        with np.load(path) as z:
            return traverse_util.unflatten_dict({k: z[k] for k in z.files}, sep="/")
    from i3d_jax.weights import load_pretrained  # e.g. torchvision GoogLeNet .pth

    model2d, variables = load_pretrained(source)
    if getattr(model2d, "ndim", 3) != 2:
        raise ValueError(f"config.init.source {source!r} holds 3D weights; inflation needs 2D")
    return jax.tree.map(np.asarray, dict(variables))


def initial_variables(config: ml_collections.ConfigDict, model, rng: jax.Array) -> dict:
    """Host (numpy) variables from scratch, 2D inflation, or a pretrained source (new head)."""
    fresh = jax.tree.map(np.asarray, jax.jit(lambda r: init_variables(config, model, r))(rng))
    method = config.init.method
    if method == "scratch":
        return fresh
    if method == "inflate":
        from i3d_jax.inflate import inflate

        v2 = _load_2d(config.init.source, config)
        target = {k: fresh[k] for k in fresh}
        keep = dict(v2)
        if config.init.new_head:
            keep["params"] = {k: v for k, v in v2["params"].items() if k != "Logits"}
            target["params"] = {k: v for k, v in fresh["params"].items() if k != "Logits"}
        out = inflate(keep, target, config.init.inflate_method)
        if config.init.new_head:
            out["params"]["Logits"] = fresh["params"]["Logits"]
        return out
    from i3d_jax.weights import load_pretrained

    _, loaded = load_pretrained(config.init.source)
    loaded = jax.tree.map(np.asarray, dict(loaded))
    reinit = ("params/Logits",) if config.init.new_head else ()
    return merge_variables(fresh, loaded, reinit)


def new_state(variables: dict, tx) -> dict:
    """The train state pytree: step, params, BatchNorm statistics, optimizer state."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": variables["params"],
        "batch_stats": variables.get("batch_stats", {}),
        "opt_state": tx.init(variables["params"]),
    }


def create_state(config, model, tx, mesh: Mesh, rng: jax.Array):
    """(state, state_shardings): the state built already sharded on the mesh."""

    def make(variables):
        return new_state(variables, tx)

    abstract_vars = jax.eval_shape(lambda r: init_variables(config, model, r), rng)
    abstract = jax.eval_shape(make, abstract_vars)
    shardings = sharding.state_shardings(abstract, mesh, config.mesh.fsdp_min_size)
    if config.init.method == "scratch":
        # Built replicated then placed, so the values never depend on the mesh.
        variables = jax.jit(lambda r: init_variables(config, model, r))(rng)
    else:
        variables = initial_variables(config, model, rng)
    state = jax.jit(make, out_shardings=shardings)(variables)
    return state, shardings, abstract


# ----------------------------------------------------------------------------- steps


def _forward(model, frozen_bn: bool, remat: bool, dtype):
    """(params, batch_stats, video, rng) -> (float32 logits [B, C], new batch_stats)."""

    def fwd(params, batch_stats, video, rng):
        x = pipeline.to_float(video, dtype)
        variables = {"params": params, "batch_stats": batch_stats}
        if frozen_bn:
            _, endpoints = model.apply(variables, x, train=False)
            new_bs = batch_stats
        else:
            (_, endpoints), updates = model.apply(
                variables, x, train=True, mutable=["batch_stats"], rngs={"dropout": rng}
            )
            new_bs = updates["batch_stats"]
        return endpoints["Logits"].astype(jnp.float32), new_bs

    if remat and not getattr(model, "remat", False):
        return jax.checkpoint(fwd)
    return fwd


def _group_mesh(mesh: Mesh, per_device: int, group_size: int) -> Mesh:
    m = max(group_size // per_device, 1)
    devices = mesh.devices.reshape(-1, m)  # the batch order of P(("data", "fsdp"))
    return Mesh(devices, GROUP_AXES)


def make_loss_fn(config, model, mesh: Mesh, micro_batch: int):
    """(params, batch_stats, video, label, rng) -> (loss, (new_batch_stats, logits))."""
    dtype = DTYPES[config.model.dtype]
    fwd = _forward(model, config.bn.frozen, config.model.remat, dtype)
    k = config.bn.group_size

    def xent(logits, label):
        return optax.softmax_cross_entropy_with_integer_labels(logits, label)

    if not k or config.bn.frozen:

        def loss_fn(params, batch_stats, video, label, rng):
            logits, new_bs = fwd(params, batch_stats, video, rng)
            return xent(logits, label).mean(), (new_bs, logits)

        return loss_fn

    per_device = micro_batch // mesh.devices.size
    gmesh = _group_mesh(mesh, per_device, k)
    spec = P(GROUP_AXES)

    def per_shard(params, batch_stats, video, label, rng):
        rng = jax.random.fold_in(rng, jax.lax.axis_index(GROUP_AXES))
        n = video.shape[0]
        if k < n:  # several groups on this device: vmap them (the bn axis has size 1 here)
            g = n // k
            rngs = jax.random.split(rng, g)
            logits, new_bs = jax.vmap(fwd, in_axes=(None, None, 0, 0))(
                params, batch_stats, video.reshape(g, k, *video.shape[1:]), rngs
            )
            logits = logits.reshape(n, -1)
            new_bs = jax.tree.map(lambda s: s.mean(0), new_bs)
        else:
            logits, new_bs = fwd(params, batch_stats, video, rng)
        # BatchNorm already averaged over `bn`; the running averages of all groups are averaged.
        new_bs = jax.lax.pmean(new_bs, GROUP_AXES[0])
        return xent(logits, label), new_bs, logits

    sharded = jax.shard_map(
        per_shard,
        mesh=gmesh,
        in_specs=(P(), P(), spec, spec, P()),
        out_specs=(spec, P(), spec),
    )

    def loss_fn(params, batch_stats, video, label, rng):
        ce, new_bs, logits = sharded(params, batch_stats, video, label, rng)
        return ce.mean(), (new_bs, logits)

    return loss_fn


def make_train_step(config, model, mesh: Mesh, tx, lr_fn, state_shardings):
    """The jitted `(state, batch) -> (state, metrics)`; the state is donated."""
    accum = config.grad_accum_steps
    micro = config.batch_size // accum
    loss_fn = make_loss_fn(config, model, mesh, micro)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    base_key = jax.random.key(config.seed)
    bsh = sharding.batch_sharding(mesh)

    def step_fn(state, batch):
        rng = jax.random.fold_in(base_key, state["step"])
        params = state["params"]
        video, label = batch["video"], batch["label"]
        if accum == 1:
            (loss, (new_bs, logits)), grads = grad_fn(
                params, state["batch_stats"], video, label, rng
            )
            correct = jnp.sum(jnp.argmax(logits, -1) == label)
        else:
            # Micro-batch j takes examples j, j + accum, ...: each stays spread over all devices.
            def split(x):
                x = x.reshape(micro, accum, *x.shape[1:])
                return jax.lax.with_sharding_constraint(
                    jnp.swapaxes(x, 0, 1), NamedSharding(mesh, P(None, sharding.BATCH_AXES))
                )

            def body(carry, xs):
                bs, gsum, lsum, csum = carry
                v, lab, j = xs
                (loss, (bs, logits)), g = grad_fn(params, bs, v, lab, jax.random.fold_in(rng, j))
                gsum = jax.tree.map(jnp.add, gsum, g)
                csum = csum + jnp.sum(jnp.argmax(logits, -1) == lab)
                return (bs, gsum, lsum + loss, csum), None

            zeros = jax.tree.map(jnp.zeros_like, params)
            init = (
                state["batch_stats"],
                zeros,
                jnp.zeros((), jnp.float32),
                jnp.zeros((), jnp.int32),
            )
            (new_bs, gsum, lsum, correct), _ = jax.lax.scan(
                body, init, (split(video), split(label), jnp.arange(accum))
            )
            grads = jax.tree.map(lambda g: g / accum, gsum)
            loss = lsum / accum
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_params = optax.apply_updates(params, updates)
        new_state = {
            "step": state["step"] + 1,
            "params": new_params,
            "batch_stats": new_bs,
            "opt_state": opt_state,
        }
        metrics = {
            "loss": loss,
            "accuracy": correct / label.shape[0],
            "learning_rate": lr_fn(state["step"]),
            "l2_grads": optax.tree.norm(grads),
            "l2_params": optax.tree.norm(new_params),
        }
        return new_state, metrics

    batch_sh = {"video": bsh, "label": bsh}
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sh),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )


# ----------------------------------------------------------------------------- checkpoints


def _managers(workdir: pathlib.Path, config):
    import orbax.checkpoint as ocp

    last = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.checkpoint.keep,
            create=True,
            enable_async_checkpointing=config.checkpoint.async_save,
            cleanup_tmp_directories=True,
        ),
    )
    best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1,
            create=True,
            best_fn=lambda m: m["video_top1"],
            best_mode="max",
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        ),
    )
    return last, best


def save_checkpoint(mngr, step: int, state, data_iter=None) -> None:
    import grain
    import orbax.checkpoint as ocp

    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore_checkpoint(mngr, step: int, abstract_state, shardings, data_iter=None):
    """State (onto `shardings`, any mesh) and, if given, the iterator state of `step`."""
    import grain
    import orbax.checkpoint as ocp

    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings
    )
    items = {"state": ocp.args.StandardRestore(target)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001 - orbax raises many types; say which checkpoint
        raise TrainingError(
            f"cannot restore checkpoint step {step} from {mngr.directory}: {type(e).__name__}: "
            f"{e}. The directory may be corrupted or from another model/config; move it aside "
            "to start over or point --workdir elsewhere."
        ) from e
    return restored["state"]


# ----------------------------------------------------------------------------- logging


class MetricWriter:
    """metrics.jsonl + TensorBoard (tensorboardX), written by process 0 only."""

    def __init__(self, workdir: pathlib.Path, resume_step: int):
        self.enabled = jax.process_index() == 0
        self.path = workdir / "metrics.jsonl"
        self.tb = None
        if not self.enabled:
            return
        if self.path.exists():  # drop lines past the restored step (they will be redone)
            keep = [
                line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]  # fmt: skip
            self.path.write_text("".join(line + "\n" for line in keep))
        try:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(workdir / "tb"))
        except ImportError:
            self.tb = None

    def write(self, step: int, metrics: dict, prefix: str = "") -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **{prefix + k: _py(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _py(v):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()


def _check_workdir(workdir: pathlib.Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_probe_{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"workdir {str(workdir)!r} is not writable: {e.strerror or e}") from e


# ----------------------------------------------------------------------------- main loop


@dataclasses.dataclass
class Setup:
    """Everything a run builds before its first step (also used by eval and tests)."""

    config: Any
    mesh: Mesh
    model: Any
    tx: Any
    lr_fn: Any
    state: Any
    shardings: Any
    abstract: Any
    step_fn: Any


def setup(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Setup:
    """Validates the config, builds the mesh, model, optimizer, state and jitted step."""
    validate_config(config)
    mesh = mesh or sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
    check_devices(config, mesh)
    bn_axis = BN_AXIS if config.bn.group_size and not config.bn.frozen else None
    model = build_model(config, bn_axis)
    tx, lr_fn = make_optimizer(config)
    # The RBG key compiles ~5x faster than threefry for the ~60 initializers of the network.
    init_key = jax.random.key(config.seed, impl="rbg")
    state, shardings, abstract = create_state(config, model, tx, mesh, init_key)
    step_fn = make_train_step(config, model, mesh, tx, lr_fn, shardings)
    return Setup(config, mesh, model, tx, lr_fn, state, shardings, abstract, step_fn)


def train_specs(config, info: pipeline.SourceInfo):
    jitter = None
    if config.input.scale_jitter_min > 0:
        jitter = (config.input.scale_jitter_min, config.input.scale_jitter_max)
    return pipeline.TrainSpec(
        clip_length=config.input.clip_length,
        crop_size=config.input.crop_size,
        loop_short=config.input.loop_short,
        flip=config.input.flip,
        scale_jitter=jitter,
        modality=config.modality,
        flow_scale=info.flow_scale,
    )


def train_iterator(config, source, info):
    ds = pipeline.train_dataset(
        source,
        train_specs(config, info),
        config.batch_size // jax.process_count(),
        seed=config.seed,
        num_threads=config.input.num_threads,
        num_workers=config.input.num_workers,
        prefetch=config.input.prefetch,
    )
    return iter(ds)


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    mesh: Mesh | None = None,
    train_source=None,
    eval_source=None,
    source_info: pipeline.SourceInfo | None = None,
    stop_after: int | None = None,
) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), evaluates, returns a summary.

    `train_source`/`eval_source`/`source_info` override the config's dataset (tests);
    `stop_after` ends the loop after that many steps of this call (tests of restarts).
    Returns `{"steps", "final_loss", "eval": results or None, "wall_s", ...}`.
    """
    from i3d_jax import eval_lib, plots

    t_start = time.time()
    validate_config(config)
    workdir = pathlib.Path(workdir).absolute()  # Orbax wants absolute paths
    _check_workdir(workdir)
    if train_source is None:
        train_source, source_info = pipeline.load_source(config.dataset, config.dataset.train_split)
        eval_source = _eval_source(config)

    source_info = source_info or pipeline.SourceInfo(
        tuple(str(i) for i in range(config.model.num_classes))
    )
    if len(source_info.label_names) > config.model.num_classes:
        raise ValueError(
            f"dataset has {len(source_info.label_names)} classes but config.model.num_classes="
            f"{config.model.num_classes}"
        )
    s = setup(config, mesh)
    if jax.process_index() == 0:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    data_iter = train_iterator(config, train_source, source_info)
    last_mngr, best_mngr = _managers(workdir, config)
    state = s.state
    start = 0
    latest = last_mngr.latest_step()
    if latest is not None:
        state = restore_checkpoint(last_mngr, latest, s.abstract, s.shardings, data_iter)
        start = int(latest)
        print(f"Resumed from {workdir / 'checkpoints'} at step {start}", flush=True)
    writer = MetricWriter(workdir, start)

    stop = {"signal": None}

    def on_sigterm(signum, frame):
        stop["signal"] = signum

    try:
        old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread
        old_handler = None

    total = config.num_train_steps
    end = total if stop_after is None else min(total, start + stop_after)
    clips_per_step = config.batch_size
    bar = None
    if config.progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
    step = start
    metrics = None
    last_loss = float("nan")
    t_log, step_log = time.time(), start
    try:
        while step < end:
            host = next(data_iter)
            batch = sharding.global_batch({"video": host["video"], "label": host["label"]}, s.mesh)
            state, metrics = s.step_fn(state, batch)
            step += 1
            save_now = step % config.checkpoint.every_steps == 0 or step == end
            log_now = step % config.log_every_steps == 0 or step == end
            if log_now or save_now:
                m = jax.device_get(metrics)
                last_loss = float(m["loss"])
                if not math.isfinite(last_loss):
                    last_mngr.wait_until_finished()
                    raise TrainingError(
                        f"non-finite loss {last_loss} at step {step}; stopped without saving. "
                        f"The last good checkpoint is step {last_mngr.latest_step()} in "
                        f"{workdir / 'checkpoints'} (try a lower lr.base or grad_clip_norm)."
                    )
                if log_now:
                    now = time.time()
                    rate = (step - step_log) / max(now - t_log, 1e-9)
                    t_log, step_log = now, step
                    writer.write(
                        step, {**m, "steps_per_s": rate, "clips_per_s": rate * clips_per_step}
                    )
                    if bar is not None:
                        bar.set_postfix(
                            loss=f"{last_loss:.3f}", steps_s=f"{rate:.2f}",
                            clips_s=f"{rate * clips_per_step:.1f}",
                        )  # fmt: skip
            if bar is not None:
                bar.update(1)
            if save_now:
                save_checkpoint(last_mngr, step, state, data_iter)
            if (
                eval_source is not None
                and config.eval_every_steps
                and step % config.eval_every_steps == 0
                and step != total
            ):
                res = eval_lib.evaluate_state(config, s, state, eval_source, source_info)
                writer.write(step, eval_lib.scalar_results(res), prefix="val_")
                _save_best(best_mngr, step, state, res)
            sig = _agree(stop["signal"] is not None)
            if sig:
                print(f"SIGTERM at step {step}: saving a checkpoint and exiting", flush=True)
                save_checkpoint(last_mngr, step, state, data_iter)
                break
    finally:
        last_mngr.wait_until_finished()
        if bar is not None:
            bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)

    results = None
    if step == total and eval_source is not None:
        results = eval_lib.evaluate_state(config, s, state, eval_source, source_info)
        results.update(checkpoint=str(workdir / "checkpoints" / str(step)), step=step)
        writer.write(step, eval_lib.scalar_results(results), prefix="val_")
        _save_best(best_mngr, step, state, results)
        if jax.process_index() == 0:
            eval_lib.write_results(workdir / "eval" / "results.json", results)
            eval_lib.write_reports(workdir / "eval", results)
    writer.close()
    last_mngr.close()
    best_mngr.close()
    if jax.process_index() == 0 and (workdir / "metrics.jsonl").exists():
        try:
            plots.plot_metrics(workdir / "metrics.jsonl", workdir / "metrics.png")
        except Exception as e:  # noqa: BLE001 - a plot never fails a run
            print(f"warning: could not plot metrics: {e}")
    return {
        "steps": step,
        "final_loss": last_loss,
        "eval": results,
        "wall_s": time.time() - t_start,
        "state": state,
        "interrupted": stop["signal"] is not None,
    }


def _eval_source(config):
    if not config.dataset.eval_split:
        return None
    try:
        return pipeline.load_source(config.dataset, config.dataset.eval_split)[0]
    except (KeyError, ValueError) as e:  # a missing split only skips evaluation
        print(f"warning: no evaluation: split {config.dataset.eval_split!r} unavailable ({e})")
        return None


def _agree(flag: bool) -> bool:
    """Whether any process saw the flag (all processes must stop at the same step)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array([flag]))))


def _save_best(mngr, step: int, state, results: dict) -> None:
    import orbax.checkpoint as ocp

    mngr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
        metrics={"video_top1": float(results["video_top1"])},
        force=True,
    )

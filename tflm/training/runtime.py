"""Runtime settings kept apart from task config: strategy and precision.

Modelled on Model Garden's `distribute_utils.get_distribution_strategy`.
"""

import dataclasses
import functools
import json
import os
import time

import keras
import tensorflow as tf
from absl import logging

from tflm.errors import UserError

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    strategy: str = "default"
    num_gpus: int = 0
    tpu: str = ""
    tpu_zone: str = ""
    gcp_project: str = ""
    precision: str = "auto"
    cpu_devices: int = 1  # >1 splits the host CPU into logical devices (replicas for `mirrored`).
    seed: int = 42
    deterministic: bool = False


def configure_cpu_devices(count):
    """Splits the host CPU into `count` logical devices.

    Lets `mirrored` run several replicas on a machine without accelerators,
    e.g. to test multi-replica training on a laptop or in CI. TensorFlow only
    allows this before it initialises its devices.
    """
    if count <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise UserError(f"--cpu_devices={count}: TensorFlow's devices were already initialised") from None


def tpu_cluster_resolver(tpu, zone="", project=""):
    """The TPUClusterResolver for --tpu / --tpu_zone / --gcp_project.

    `tpu` is a TPU name, a grpc:// address, or "local" on a TPU VM.
    """
    if not tpu:
        raise UserError("--strategy=tpu needs --tpu (a TPU name, grpc:// address, or 'local')")
    if tpu == "local" and (zone or project):
        raise UserError("--tpu=local: --tpu_zone and --gcp_project only apply to a named TPU")
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu="" if tpu == "local" else tpu, zone=zone or None, project=project or None)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"--tpu={tpu}: cannot resolve the TPU ({str(e).splitlines()[0]})") from None


def get_distribution_strategy(strategy="default", num_gpus=0, tpu="", tpu_zone="", gcp_project=""):
    """Returns a tf.distribute.Strategy.

    Args:
      strategy: one of STRATEGIES. `default` is the no-op strategy (one
        device); `mirrored` uses all local GPUs, or every logical CPU device
        when there is no GPU; `multi_worker_mirrored` reads TF_CONFIG.
      num_gpus: GPUs for `mirrored` (0: all visible GPUs); `one_device` takes the first.
      tpu, tpu_zone, gcp_project: where the TPU is, for `tpu`.
    """
    if strategy not in STRATEGIES:
        raise UserError(f"--strategy={strategy}: expected one of {STRATEGIES}")
    if num_gpus < 0:
        raise UserError(f"--num_gpus={num_gpus}: must be >= 0")
    if num_gpus > 1 and strategy != "mirrored":
        raise UserError(f"--num_gpus={num_gpus} needs --strategy=mirrored (the only strategy it applies to)")
    # Physical, not logical, devices: listing logical ones initialises
    # TensorFlow, after which collectives can no longer be configured.
    visible_gpus = len(tf.config.list_physical_devices("GPU"))
    if num_gpus > visible_gpus:
        raise UserError(f"--num_gpus={num_gpus}: only {visible_gpus} GPU(s) visible")
    if strategy != "tpu" and (tpu or tpu_zone or gcp_project):
        raise UserError(f"--tpu={tpu} needs --strategy=tpu" if tpu else
                        "--tpu_zone / --gcp_project need --strategy=tpu")
    if strategy == "multi_worker_mirrored":
        return _multi_worker_mirrored()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if strategy == "default":
        return tf.distribute.get_strategy()
    if strategy == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
    if strategy == "mirrored":
        devices = gpus[: num_gpus or len(gpus)] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        return tf.distribute.MirroredStrategy(devices)
    resolver = tpu_cluster_resolver(tpu, tpu_zone, gcp_project)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _multi_worker_mirrored():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}"))
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG: not valid JSON ({e})") from None
    if "cluster" in cluster and "task" not in cluster:
        raise UserError("TF_CONFIG: has a cluster but no task (type and index of this worker)")
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        # TensorFlow wants collectives configured before it runs any op.
        raise UserError(f"--strategy=multi_worker_mirrored: {str(e).splitlines()[0]}") from None


def is_chief(strategy):
    """Whether this process writes shared outputs (exports, the run's files)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                     and "chief" not in resolver.cluster_spec().as_dict())


def worker_model_dir(model_dir, strategy):
    """The model dir this process writes: --model_dir on the chief, a subfolder on other workers.

    Under multi_worker_mirrored every worker must save checkpoints (saving
    is collective), and each restores its own on resume; giving non-chief
    workers their own folder keeps them from overwriting the chief's files
    and works with or without a shared file system.
    """
    if is_chief(strategy):
        return model_dir
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, "workers", f"{resolver.task_type}-{resolver.task_id}")


def distribute_dataset(strategy, dataset):
    """`strategy.experimental_distribute_dataset` with an explicit sharding policy.

    tflm datasets are built from in-memory examples, not files, so each
    worker reads all of them and keeps its share of every global batch
    (DATA sharding); the default AUTO tries FILE sharding first and warns.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def per_replica_batch_size(global_batch_size, strategy):
    """Checks that the global batch splits evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise UserError(f"--batch_size={global_batch_size}: must be a multiple of the "
                        f"{replicas} replicas (each replica gets an equal share)")
    return global_batch_size // replicas


# mixed_bfloat16 must run matmuls at least this much faster than float32 to
# pay for its casts and its float32 element-wise work. Measured: a CPU whose
# bf16 matmuls ran about 2x float32 trained 1.6x faster in mixed_bfloat16; one
# (avx512_bf16 listed, no AMX) where they ran 0.5x trained at 0.65x.
CPU_BFLOAT16_MIN_MATMUL_SPEEDUP = 1.3


@functools.lru_cache(maxsize=None)
def cpu_bfloat16_matmul_speedup(rounds=5):
    """How much faster this CPU runs a transformer-sized matmul in bfloat16 than in float32.

    The CPU's flags do not say it: machines listing avx512_bf16 measured from
    0.5x to 4x. Best of `rounds` alternating calls of a feed-forward matmul at
    batch 32 x length 64 (under a second); measured once per process.
    """
    calls = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.stateless_normal([2048, 384], seed=[0, 0]), dtype)
        b = tf.cast(tf.random.stateless_normal([384, 1536], seed=[0, 1]), dtype)
        matmul = tf.function(tf.matmul)
        matmul(a, b)  # Trace and warm up.
        calls[dtype] = (matmul, a, b)
    best = {tf.float32: float("inf"), tf.bfloat16: float("inf")}
    for _ in range(rounds):
        for dtype, (matmul, a, b) in calls.items():
            start = time.perf_counter()
            matmul(a, b)  # Synchronous on the CPU.
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[tf.float32] / best[tf.bfloat16]


def resolve_precision(precision, strategy):
    """Picks the dtype policy name; `auto` uses what is fastest on the device.

    CPU: mixed_bfloat16 only where bf16 matmuls measure at least
    CPU_BFLOAT16_MIN_MATMUL_SPEEDUP times float32's (see
    `cpu_bfloat16_matmul_speedup`); TPUs and recent GPUs prefer bfloat16,
    older GPUs float16.
    """
    if precision not in PRECISIONS:
        raise UserError(f"--precision={precision}: expected one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))[0]
        return "mixed_bfloat16" if major >= 8 else "mixed_float16"
    speedup = cpu_bfloat16_matmul_speedup()
    chosen = "mixed_bfloat16" if speedup >= CPU_BFLOAT16_MIN_MATMUL_SPEEDUP else "float32"
    logging.info("--precision=auto: bfloat16 matmuls ran %.2fx float32's on this CPU (mixed_bfloat16 needs "
                 "%.1fx): %s", speedup, CPU_BFLOAT16_MIN_MATMUL_SPEEDUP, chosen)
    return chosen


JIT_COMPILE = ("auto", "true", "false")


def resolve_jit_compile(setting):
    """Whether the training step is XLA-compiled; `auto` is off, as measured fastest on CPU.

    On CPU, XLA trained slower than TensorFlow's own kernels with oneDNN in
    every setting measured (benchmarks/README.md, "Training throughput"); on
    GPU it is not measured here, so it stays off unless asked for. TPU
    programs are always compiled, whatever this says.
    """
    if setting not in JIT_COMPILE:
        raise UserError(f"--jit_compile={setting}: expected one of {JIT_COMPILE}")
    return setting == "true"


def set_up_runtime(config):
    """Creates the strategy, seeds everything and sets Keras's dtype policy.

    Call it first: device and collective settings must precede any other
    TensorFlow work. Returns (strategy, precision name).
    """
    configure_cpu_devices(config.cpu_devices)
    strategy = get_distribution_strategy(config.strategy, config.num_gpus, config.tpu, config.tpu_zone,
                                         config.gcp_project)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # Same seed + deterministic kernels: two runs on one machine give
        # identical weights and metrics (at some speed cost on GPU).
        tf.config.experimental.enable_op_determinism()
    precision = resolve_precision(config.precision, strategy)
    keras.config.set_dtype_policy(precision)
    logging.info(
        "Runtime: strategy=%s (%s, %d replica(s)), precision=%s, seed=%d%s",
        config.strategy, type(strategy).__name__, strategy.num_replicas_in_sync, precision, config.seed,
        ", deterministic" if config.deterministic else "",
    )
    return strategy, precision

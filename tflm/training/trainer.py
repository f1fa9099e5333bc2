"""A step-based training loop with checkpoints, resume, eval and early stopping.

Task-agnostic: it gets a model, an optimizer, a per-example loss function, a
dataset of (features, targets) and an `evaluate` callable returning a metrics
dict. It follows Model Garden's Orbit loop rather than `Model.fit` because it
must resume mid-epoch (the data iterator position is in the checkpoint), and
because Keras 3.15's `fit` trips over tf.distribute.
"""

import dataclasses
import json
import math
import os
import resource
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tflm import run_files
from tflm.errors import Preempted
from tflm.errors import TrainingDiverged
from tflm.errors import UserError
from tflm.metrics.metric_direction import metric_direction
from tflm.training import optimization
from tflm.training import runtime

BEST_METRICS_FILE = "best_metrics.json"
NAN_POLICIES = ("stop", "rollback")
TRAIN_STATS_FILE = "train_stats.json"


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    train_steps: int
    steps_per_epoch: int
    checkpoint_every_steps: int = 500
    eval_every_steps: int = 0  # 0: once per epoch.
    keep_checkpoints: int = 3
    best_metric: str = "accuracy"
    early_stopping_patience: int = 0  # Evaluations without improvement; 0: off.
    steps_per_loop: int = 1
    on_nan: str = "stop"  # NaN/Inf loss: "stop", or "rollback" to the last checkpoint.
    max_rollbacks: int = 3
    jit_compile: bool = False  # XLA-compile the training step.

    @property
    def eval_interval(self):
        return self.eval_every_steps or self.steps_per_epoch

    @property
    def best_metric_mode(self):
        return metric_direction(self.best_metric)


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, "checkpoints")


def latest_checkpoint(model_dir):
    """Path of the latest training checkpoint in `model_dir`, or None."""
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir))


def best_dir(model_dir):
    return os.path.join(model_dir, "best")


def restore_for_inference(model, model_dir):
    """Loads the best weights (else the latest) from a training run.

    Returns the checkpoint path restored; raises UserError if there is none
    or it is unreadable.
    """
    for directory in (best_dir(model_dir), checkpoint_dir(model_dir)):
        path = tf.train.latest_checkpoint(directory)
        if path:
            try:
                tf.train.Checkpoint(model=model).restore(path).expect_partial()
            except (tf.errors.OpError, ValueError, AssertionError) as e:
                raise UserError(f"checkpoint {path}: cannot restore ({str(e).splitlines()[0]})") from None
            return path
    raise UserError(f"--model_dir={model_dir}: no checkpoint to load (train first)")


class Trainer:
    """Trains `model` under `strategy`; create model and optimizer in its scope."""

    def __init__(self, model, optimizer, loss_fn, strategy, model_dir, config, evaluate):
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.strategy = strategy
        self.model_dir = model_dir
        self.config = config
        self.evaluate = evaluate
        sign = 1.0 if config.best_metric_mode == "max" else -1.0
        with strategy.scope():
            # Slot variables must exist before the step is traced: built lazily
            # inside a replica context they break MirroredStrategy.
            optimizer.build(model.trainable_variables)
            # Best score is stored negated for "min" metrics so larger is better.
            self._sign = sign
            self._best_score = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
            self._evals_since_best = tf.Variable(0, dtype=tf.int64, trainable=False)
            self._stopped_early = tf.Variable(False, trainable=False)
            # Batches passed over by NaN rollbacks; the data position is
            # step + skipped, so a resume lands where the run was.
            self._skipped_batches = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._rss_at_epoch_end = []  # Host memory after each epoch of this run, to spot leaks.
        # Steps of this process's latest and best evaluations (None: none yet).
        self._last_eval_step = self._best_eval_step = None
        # Dropout seed-generator states are model variables but not weights,
        # so tracking the model alone misses them; without them a resumed
        # run would draw different dropout masks.
        weight_ids = {id(v) for v in model.weights}
        random_states = [v.value for v in model.variables if id(v) not in weight_ids]
        self._checkpoint = tf.train.Checkpoint(
            model=model,
            random_states=random_states,
            optimizer=optimizer,
            best_score=self._best_score,
            evals_since_best=self._evals_since_best,
            stopped_early=self._stopped_early,
            skipped_batches=self._skipped_batches,
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, checkpoint_dir(model_dir), max_to_keep=config.keep_checkpoints
        )
        self._best_manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), best_dir(model_dir), max_to_keep=1
        )
        self._restored = False

    def restore(self):
        """Restores the latest checkpoint in the model dir, if any (once); returns the step.

        `train` calls it; calling it first lets a pipeline fail on an
        unreadable checkpoint before it writes anything.
        """
        if not self._restored:
            self._restore_latest(self._checkpoint, self._manager)
            self._restored = True
        return int(self.optimizer.iterations.numpy())

    # -- the compiled step -------------------------------------------------
    def _make_train_loop(self):
        model, optimizer, loss_fn, strategy = self.model, self.optimizer, self.loss_fn, self.strategy

        def step_fn(batch):
            features, targets = batch
            with tf.GradientTape() as tape:
                outputs = model(features, training=True)
                loss = tf.nn.compute_average_loss(loss_fn(targets, outputs))
                scaled = optimizer.scale_loss(loss)
            variables = model.trainable_variables
            gradients = tape.gradient(scaled, variables)
            optimizer.apply_gradients(zip(gradients, variables))
            return loss

        if self.config.jit_compile:
            # The step only: the loop around it reads an iterator, which XLA cannot compile.
            step_fn = tf.function(step_fn, jit_compile=True)

        @tf.function
        def train_loop(iterator, steps, stop_requested):
            total = tf.constant(0.0)
            for _ in tf.range(steps):
                losses = strategy.run(step_fn, args=(next(iterator),))
                total += strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
            # A stop request (SIGTERM) on any worker stops every worker after
            # the same step, so their checkpoints agree.
            requests = strategy.run(lambda: tf.identity(stop_requested))
            stop = strategy.reduce(tf.distribute.ReduceOp.SUM, requests, axis=None) > 0
            return total / tf.cast(steps, tf.float32), stop

        return train_loop

    def _learning_rate(self):
        rate = self.optimizer.learning_rate
        return float(tf.convert_to_tensor(rate(self.optimizer.iterations) if callable(rate) else rate))

    # -- the loop ----------------------------------------------------------
    def train(self, train_dataset):
        """Trains to `config.train_steps`, resuming from the latest checkpoint.

        Returns the best evaluation metrics (the model ends holding the best
        weights).
        """
        config = self.config
        self.restore()
        checkpoint, manager, best_manager = self._checkpoint, self._manager, self._best_manager
        step = int(self.optimizer.iterations.numpy())
        if step >= config.train_steps or bool(self._stopped_early.numpy()):
            logging.info("Training already finished at step %d in %s", step, self.model_dir)
            return self._finish(best_manager)

        def data_from(step):
            # The input order is a function of the seed alone, so skipping the
            # batches already consumed puts a resumed run exactly where it
            # stopped. (Distributed iterators cannot be checkpointed.)
            position = step + int(self._skipped_batches.numpy())
            return iter(runtime.distribute_dataset(self.strategy, train_dataset.skip(position)))

        iterator = data_from(step)
        train_loop = self._make_train_loop()
        writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
        eval_writer = tf.summary.create_file_writer(os.path.join(self.model_dir, "eval"))
        epochs = math.ceil(config.train_steps / config.steps_per_epoch)
        progbar = None
        rollbacks = 0
        # Throughput counts time inside training calls only, skipping the
        # first one (it traces); eval and checkpoint time are left out.
        timed_steps, timed_seconds, start_step = 0, 0.0, step
        with _StopRequests() as stop_requests:
            while step < config.train_steps:
                if progbar is None or step % config.steps_per_epoch == 0:
                    epoch = step // config.steps_per_epoch
                    epoch_start = epoch * config.steps_per_epoch
                    print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                    progbar = keras.utils.Progbar(
                        min(config.steps_per_epoch, config.train_steps - epoch_start),
                        stateful_metrics=["loss", "lr"],
                    )
                    progbar.update(step - epoch_start)
                steps = self._steps_to_next_event(step)
                call_start = time.time()
                loss, stop_requested = train_loop(iterator, tf.constant(steps),
                                                  tf.constant(float(stop_requests.received)))
                loss = float(loss)
                if step > start_step:
                    timed_steps, timed_seconds = timed_steps + steps, timed_seconds + time.time() - call_start
                step += steps
                if step % config.steps_per_epoch == 0:
                    self._rss_at_epoch_end.append(current_rss_mb())
                if not math.isfinite(loss):
                    rollbacks += 1
                    step = self._roll_back(loss, step, checkpoint, manager, rollbacks)
                    iterator, progbar = data_from(step), None
                    continue
                lr = self._learning_rate()
                progbar.update(step - epoch_start, [("loss", loss), ("lr", lr)])
                with writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", lr)
                evaluated = stop = False
                if step % config.eval_interval == 0 or step == config.train_steps:
                    # With weight averaging, the average is what is evaluated and kept as the best.
                    with optimization.averaged_weights(self.optimizer):
                        stop = self._evaluate_and_track(step, best_manager, eval_writer)
                    evaluated = True
                if stop or step == config.train_steps:
                    self._stopped_early.assign(stop)
                    manager.save(checkpoint_number=step)
                    break
                # A checkpoint after each evaluation keeps a rollback from
                # going back before a saved best.
                if evaluated or step % config.checkpoint_every_steps == 0 or bool(stop_requested):
                    manager.save(checkpoint_number=step)
                if bool(stop_requested):
                    raise Preempted(
                        f"stopped by {stop_requests.name or 'another worker'} at step {step}; saved "
                        f"{manager.latest_checkpoint}; run the same command again to resume")
        self._write_train_stats(step - start_step, timed_steps, timed_seconds)
        return self._finish(best_manager)

    def _roll_back(self, loss, step, checkpoint, manager, rollbacks):
        """Handles a NaN/Inf loss per `config.on_nan`; returns the step to go on from."""
        last_good = manager.latest_checkpoint
        problem = f"training loss became {loss} at step {step}"
        advice = "lower --learning_rate, keep --clip_norm on, or use --precision=float32"
        if self.config.on_nan == "stop":
            raise TrainingDiverged(f"{problem}; stopped (--on_nan=stop). Last good checkpoint: "
                                   f"{last_good or 'none'}; {advice}")
        if not last_good:
            raise TrainingDiverged(f"{problem}; no checkpoint to roll back to; {advice}")
        if rollbacks > self.config.max_rollbacks:
            raise TrainingDiverged(f"{problem} again after {self.config.max_rollbacks} rollbacks; "
                                   f"stopped. Last good checkpoint: {last_good}; {advice}")
        checkpoint.restore(last_good).assert_existing_objects_matched()
        good_step = int(self.optimizer.iterations.numpy())
        self._skipped_batches.assign_add(step - good_step)
        logging.warning("%s: rolled back to %s and skipping batches %d-%d (rollback %d of at most %d)",
                        problem, last_good, good_step + 1, step, rollbacks, self.config.max_rollbacks)
        return good_step

    @property
    def best_is_last_evaluation(self):
        """Whether the weights `train` ends with are the ones its latest `evaluate` call saw.

        The last evaluation is always at the final step, so when it was also
        the best, the restored best weights are the evaluated ones and its
        results need not be computed again.
        """
        return self._best_eval_step is not None and self._best_eval_step == self._last_eval_step

    def _write_train_stats(self, steps, timed_steps, seconds):
        # Linux batches per-thread RSS counters, so its high-water mark can trail a
        # /proc sample by a few pages; the peak reported is never below one.
        samples = [rss for rss in self._rss_at_epoch_end if rss is not None]
        stats = {"steps": steps, "precision": keras.config.dtype_policy().name,
                 "steady_state_steps": timed_steps, "steady_state_seconds": seconds,
                 "steps_per_second": timed_steps / seconds if timed_steps else None,
                 "rss_mb_at_epoch_end": self._rss_at_epoch_end,
                 "peak_rss_mb": max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *samples])}
        logging.info("Trained %d steps; steady state %.2f steps/s", steps, stats["steps_per_second"] or 0)
        run_files.write_json(os.path.join(self.model_dir, TRAIN_STATS_FILE), stats)

    def _steps_to_next_event(self, step):
        config = self.config
        boundaries = [config.steps_per_loop, config.checkpoint_every_steps, config.eval_interval,
                      config.steps_per_epoch]
        distances = [b - step % b for b in boundaries]
        return min(distances + [config.train_steps - step])

    def _restore_latest(self, checkpoint, manager):
        path = manager.latest_checkpoint
        if not path:
            logging.info("No checkpoint in %s: training from the start", manager.directory)
            return
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            raise UserError(
                f"checkpoint {path}: cannot resume from it ({str(e).splitlines()[0]}); "
                "use a new --model_dir or delete the checkpoint"
            ) from None
        logging.info("Resumed from %s at step %d", path, int(self.optimizer.iterations.numpy()))

    def _evaluate_and_track(self, step, best_manager, eval_writer):
        """Evaluates, keeps the best weights; returns True to stop early."""
        metrics = self.evaluate()
        self._last_eval_step = step
        with eval_writer.as_default(step=step):
            for name, value in metrics.items():
                if isinstance(value, (int, float)):
                    tf.summary.scalar(name, value)
        if self.config.best_metric not in metrics:
            raise UserError(
                f"--best_metric={self.config.best_metric}: not computed by this task "
                f"(available: {sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))})"
            )
        score = self._sign * float(metrics[self.config.best_metric])
        summary = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        if score > float(self._best_score.numpy()):
            self._best_score.assign(score)
            self._evals_since_best.assign(0)
            best_manager.save(checkpoint_number=step)
            self._best_eval_step = step
            run_files.write_json(os.path.join(best_dir(self.model_dir), BEST_METRICS_FILE),
                                 {"step": step, "metrics": metrics})
            print(f"\nstep {step}: {summary} (new best {self.config.best_metric})", flush=True)
        else:
            self._evals_since_best.assign_add(1)
            print(f"\nstep {step}: {summary}", flush=True)
        patience = self.config.early_stopping_patience
        if patience and int(self._evals_since_best.numpy()) >= patience:
            logging.info("Early stopping at step %d: %s did not improve for %d evaluations",
                         step, self.config.best_metric, patience)
            return True
        return False

    def _finish(self, best_manager):
        if not best_manager.latest_checkpoint:
            return {}
        tf.train.Checkpoint(model=self.model).restore(best_manager.latest_checkpoint).expect_partial()
        with tf.io.gfile.GFile(os.path.join(best_dir(self.model_dir), BEST_METRICS_FILE)) as f:
            best = json.load(f)
        logging.info("Restored best weights from step %d (%s=%s)", best["step"],
                     self.config.best_metric, best["metrics"].get(self.config.best_metric))
        return best["metrics"]


def current_rss_mb():
    """This process's resident memory now (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return None


class _StopRequests:
    """Records SIGTERM (preemption notice) instead of dying, while training runs.

    The loop saves a checkpoint at the next step boundary and stops. Signals
    can only be handled on the main thread; elsewhere SIGTERM keeps its
    default action and the periodic checkpoints are what survives.
    """

    def __init__(self):
        self.received = False
        self.name = None
        self._previous = None

    def _handle(self, signum, frame):
        del frame
        self.received, self.name = True, signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

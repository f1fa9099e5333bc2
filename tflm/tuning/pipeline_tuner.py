"""A keras-tuner Tuner whose trials are pipeline runs.

Each trial runs the task pipeline in a child process with the trial's
hyperparameters as flags and its own --model_dir, so a trial trains,
checkpoints, resumes and fails exactly like a normal run, under whatever
strategy the pipeline flags choose. The objective is read from the run's
eval_results.json.
"""

import json
import os
import shutil
import time

import keras_tuner
import numpy as np
import tensorflow as tf
from absl import logging
from keras_tuner.src.engine import base_tuner

from tflm import run_files
from tflm.tuning import pipeline_runs
from tflm.tuning.search_space import SearchSpace

TUNERS = ("random", "bayesian", "hyperband")
TRIAL_FILE = "tflm_trial.json"


class BudgetSpent(keras_tuner.errors.FatalError):
    """The time budget or --max_trials ran out; the search stops here and can be resumed."""


def build_oracle(tuner, space, objective, max_trials, seed):
    common = dict(objective=objective, hyperparameters=space.hyperparameters(), seed=seed,
                  tune_new_entries=False, allow_new_entries=False, max_consecutive_failed_trials=3)
    if tuner == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if tuner == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=max_trials, num_initial_points=min(2, max_trials), **common)
    return keras_tuner.oracles.HyperbandOracle(max_epochs=space.max_epochs or 3, factor=3, **common)


class PipelineTuner(base_tuner.BaseTuner):
    """Runs trials as pipeline processes; resumable from `directory`."""

    def __init__(self, oracle, pipeline, pipeline_flags, directory, max_trials, deadline, executions_per_trial=1,
                 seed=42):
        self.pipeline = pipeline
        self.pipeline_flags = list(pipeline_flags)
        self.max_trials = max_trials
        self.deadline = deadline
        self.executions_per_trial = executions_per_trial
        self.seed = seed
        super().__init__(oracle, directory=directory, project_name="search")
        self.hparams_dir = os.path.join(directory, "hparams")

    # keras-tuner's hooks -----------------------------------------------------
    def pre_create_trial(self):
        # Hyperband has no trial limit of its own. A resumed search first
        # reruns the trials an interruption left unfinished.
        if len(self.oracle.trials) >= self.max_trials and not self.oracle._retry_queue:
            raise BudgetSpent(f"--max_trials={self.max_trials} reached")
        if time.time() >= self.deadline:
            raise BudgetSpent("time budget spent")

    def run_trial(self, trial):
        values = trial.hyperparameters.values
        trial_dir = self.get_trial_dir(trial.trial_id)
        flags = self.pipeline_flags + SearchSpace.trial_flags(values)
        objective = self.oracle.objective.name
        scores, seconds, memory = [], 0.0, 0.0
        for execution in range(self.executions_per_trial):
            model_dir = os.path.join(trial_dir, f"run{execution}")
            self._continue_hyperband_parent(values, execution, model_dir)
            remaining = self.deadline - time.time()
            if remaining <= 0:
                raise BudgetSpent("time budget spent")
            result = pipeline_runs.run_pipeline_process(
                self.pipeline, flags + [f"--model_dir={model_dir}", "--mode=train",
                                        f"--seed={self.seed + execution}"],
                os.path.join(trial_dir, "pipeline.log"), timeout=remaining)
            seconds += result.seconds
            memory = max(memory, result.peak_memory_mb)
            if result.timed_out:
                # The run saved a checkpoint on SIGTERM; a resumed search reruns
                # this trial, which continues from it.
                raise BudgetSpent(f"time budget spent during trial {trial.trial_id}")
            if not result.ok:
                self._write_trial_record(trial_dir, seconds, memory, result.message)
                raise keras_tuner.errors.FailedTrialError(result.message or f"exit status {result.returncode}")
            with tf.io.gfile.GFile(os.path.join(model_dir, run_files.EVAL_RESULTS_FILE)) as f:
                report = json.load(f)
            if objective not in report:
                raise keras_tuner.errors.FatalError(
                    f"--objective={objective}: the {self.pipeline} pipeline reports "
                    f"{sorted(k for k, v in report.items() if isinstance(v, float))}")
            scores.append(float(report[objective]))
        score = float(np.mean(scores))
        self._write_trial_record(trial_dir, seconds, memory, "")
        self._write_hparams(trial.trial_id, values, objective, score)
        logging.info("Trial %s: %s=%.4f in %.0fs", trial.trial_id, objective, score, seconds)
        return {objective: score}

    # helpers ---------------------------------------------------------------
    def _continue_hyperband_parent(self, values, execution, model_dir):
        """Hyperband's later rounds continue a trial of the round before: start from its checkpoints."""
        parent = values.get("tuner/trial_id")
        if not parent or tf.io.gfile.exists(model_dir):
            return
        source = os.path.join(self.get_trial_dir(parent), f"run{execution}")
        if tf.io.gfile.exists(source):
            shutil.copytree(source, model_dir)

    @staticmethod
    def _write_trial_record(trial_dir, seconds, memory, message):
        with open(os.path.join(trial_dir, TRIAL_FILE), "w") as f:
            json.dump({"seconds": seconds, "peak_memory_mb": memory, "message": message}, f)

    def _write_hparams(self, trial_id, values, objective, score):
        from tensorboard.plugins.hparams import api as hparams_api

        writer = tf.summary.create_file_writer(os.path.join(self.hparams_dir, f"trial_{trial_id}"))
        with writer.as_default():
            hparams_api.hparams({k: v for k, v in values.items() if not k.startswith("tuner/")}, trial_id=trial_id)
            tf.summary.scalar(objective, score, step=1)
        writer.close()

    def trial_record(self, trial):
        path = os.path.join(self.get_trial_dir(trial.trial_id), TRIAL_FILE)
        if not os.path.exists(path):
            return {"seconds": None, "peak_memory_mb": None, "message": ""}
        with open(path) as f:
            return json.load(f)

    # Models live in the trials' model dirs; the pipeline exports them.
    def save_model(self, trial_id, model, step=0):
        del trial_id, model, step

    def load_model(self, trial):
        raise NotImplementedError("trial models are exported with the pipeline's --mode=export")

"""Run hear-eval-kit 2021.1.3's own runners, unchanged, on today's torch and PyTorch Lightning 1.9.

Usage (``scripts/hear_eval.sh`` calls it):
    python kits/heareval_run.py embeddings MODULE --model CKPT --tasks-dir T --embeddings-dir E
    python kits/heareval_run.py predictions EMBEDDING_TASK_DIRS... [--grid ...]

Fixes applied here before the runner starts (the pins themselves are in the script):
- tensorflow: heareval imports it at module top but only asks ``isinstance(model, tf.Module)``
  for a torch model; ``tests/stubs/tensorflow`` (the stand-in hearvalidator's tests use)
  answers that, instead of installing tensorflow.
- torch >= 2.6 loads with ``weights_only=True``; heareval and Lightning load Lightning's own
  checkpoints (written by this same run) with a bare ``torch.load``, so the predictions step
  sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``. The embeddings step, which loads the user's
  model checkpoint, keeps the safe default.
- Event tasks: heareval tests the best checkpoint at the epoch it records for it, by setting
  ``trainer.fit_loop.current_epoch``; Lightning 1.9 ignores that (the epoch comes from its
  progress counters), so the test step asks ``epoch_best_postprocessing_or_default`` for an
  epoch whose postprocessing was never stored: ``KeyError: <epoch>``. The wrapper below
  answers that lookup, while a grid point is tested, with the grid point's own epoch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pin_test_epoch(task_predictions) -> None:
    """During ``task_predictions_test(grid_point=g)``, look postprocessing up at ``g.epoch``."""
    model = task_predictions.EventPredictionModel
    lookup, run_test = model.epoch_best_postprocessing_or_default, task_predictions.task_predictions_test
    testing: list[int] = []

    def epoch_best_postprocessing_or_default(self, epoch: int):
        return lookup(self, testing[-1] if testing else epoch)

    def task_predictions_test(*args, **kwargs):
        testing.append(kwargs["grid_point"].epoch)
        try:
            return run_test(*args, **kwargs)
        finally:
            testing.pop()

    model.epoch_best_postprocessing_or_default = epoch_best_postprocessing_or_default
    task_predictions.task_predictions_test = task_predictions_test


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"embeddings", "predictions"}:
        sys.exit("usage: heareval_run.py {embeddings,predictions} RUNNER_ARGS...")
    sys.path.insert(0, str(REPO / "tests" / "stubs"))
    step, args = argv[0], argv[1:]
    if step == "predictions":
        os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        import heareval.predictions.task_predictions as task_predictions
        from heareval.predictions.runner import runner

        _pin_test_epoch(task_predictions)
    else:
        from heareval.embeddings.runner import runner
    runner.main(args=args, prog_name=f"heareval.{step}.runner")


if __name__ == "__main__":
    main(sys.argv[1:])

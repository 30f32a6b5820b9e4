"""Run by `torchrun` from test_distributed.py (not a test module itself):

    dist_worker.py STAGE=RECIPE ...

runs the stages one after the other in the same process group. STAGE is calibrate, qat or
finetune (the stage function), or cli-qat (`qtool qat -r RECIPE`, which ends the process).
QTOOL_TEST_FAIL=RANK:STEP makes that rank raise a QtoolError as it starts training step STEP of
the last stage; QTOOL_TEST_RECORD=FILE has rank 0 write the classes of the modules it wrapped
in DDP to FILE.
"""

from __future__ import annotations

import json
import os
import sys

import torch


def _record_wraps() -> list[str]:
    from qtoolkit import dist

    wrapped: list[str] = []
    real_wrap = dist.wrap_model

    def wrap_model(model, device):
        wrapped.append(type(model).__name__)
        return real_wrap(model, device)

    dist.wrap_model = wrap_model
    return wrapped


def _fail_at(fail_rank: int, fail_step: int) -> None:
    from qtoolkit import dist
    from qtoolkit.errors import QtoolError

    real_shard = dist.shard_rows
    calls = [0]

    def shard_rows(*args, **kwargs):
        calls[0] += 1
        if calls[0] == fail_step and dist.rank() == fail_rank:
            raise QtoolError(f"injected failure at step {fail_step}")
        return real_shard(*args, **kwargs)

    dist.shard_rows = shard_rows


def main() -> None:
    torch.set_num_threads(1)
    from qtoolkit.pipeline.calibrate import run_calibrate
    from qtoolkit.pipeline.finetune import run_finetune
    from qtoolkit.pipeline.qat import run_qat
    from qtoolkit.recipe import load_recipe

    wrapped = _record_wraps()
    stages = {"calibrate": run_calibrate, "qat": run_qat, "finetune": run_finetune}
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        stage, recipe = arg.split("=", 1)
        if i == len(args) - 1 and os.environ.get("QTOOL_TEST_FAIL"):
            _fail_at(*(int(x) for x in os.environ["QTOOL_TEST_FAIL"].split(":")))
        if stage == "cli-qat":
            from qtoolkit.cli import main as qtool

            _record(wrapped)
            sys.argv = ["qtool", "qat", "-r", recipe]
            qtool()
        else:
            stages[stage](load_recipe(recipe))
    _record(wrapped)


def _record(wrapped: list[str]) -> None:
    path = os.environ.get("QTOOL_TEST_RECORD")
    if path and os.environ.get("RANK") == "0":
        with open(path, "w") as f:
            json.dump(wrapped, f)


if __name__ == "__main__":
    main()

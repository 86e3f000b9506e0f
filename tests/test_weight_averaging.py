"""SOLVER.WEIGHT_AVERAGING: the final model is the mean of the weights after the chosen steps,
training itself is unchanged, and a resumed run averages the same weights."""
import shutil
from types import SimpleNamespace

import torch

from conftest import SHORT_RUN, SYNTHETIC_DA, SYNTHETIC_FPN, run_train_net_here
from da_detect.config import load_config
from da_detect.engine import DATrainer
from da_detect.engine.trainer import TrainingProgress
from da_detect.engine.weight_averaging import WeightAveraging

# SHORT_RUN checkpoints after steps 4, 8 and 12; the averaged run takes the mean of those three.
AVERAGING = ["SOLVER.WEIGHT_AVERAGING.ENABLED", "True", "SOLVER.WEIGHT_AVERAGING.START_ITER", "4",
             "SOLVER.WEIGHT_AVERAGING.PERIOD", "4"]


def weights(path):
    return torch.load(path, map_location="cpu")["model"]


def train(output_dir, *opts, resume=False):
    run_train_net_here("--config-file", SYNTHETIC_FPN, *(["--resume"] if resume else []),
                       *SHORT_RUN, *opts, "OUTPUT_DIR", output_dir)


def test_final_model_is_the_mean_of_the_last_steps_weights_and_survives_resume(tmp_path):
    plain, averaged, resumed = tmp_path / "plain", tmp_path / "averaged", tmp_path / "resumed"
    train(plain)
    train(averaged, *AVERAGING)

    # Averaging leaves training alone: the weights after step 8 are the plain run's.
    after_step_8 = weights(averaged / "model_0000007.pth")
    for key, value in weights(plain / "model_0000007.pth").items():
        assert torch.equal(value, after_step_8[key]), key
    steps = [weights(plain / name) for name in
             ("model_0000003.pth", "model_0000007.pth", "model_final.pth")]
    final = weights(averaged / "model_final.pth")
    changed = 0
    for key, value in final.items():
        if not torch.is_floating_point(value):
            continue
        mean = sum(step[key] for step in steps) / len(steps)
        torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6, msg=key)
        changed += not torch.equal(value, steps[-1][key])
    assert changed > 0.9 * len(final)  # trained weights moved; the mean is not the last step's

    # Resumed after step 8 (two of the three steps averaged), it ends with the same mean.
    shutil.copytree(averaged, resumed)
    for name in ("model_final.pth", "model_0000011.pth"):
        (resumed / name).unlink()
    (resumed / "last_checkpoint").write_text("model_0000007.pth")
    train(resumed, *AVERAGING, resume=True)
    resumed_final = weights(resumed / "model_final.pth")
    for key, value in final.items():
        assert torch.equal(value, resumed_final[key]), key


def test_averaged_steps_are_counted_back_from_the_last_step():
    # MAX_ITER 10, PERIOD 4, START_ITER 3: steps 10 and 6 (not 4 and 8, counted from step 0);
    # the weight after each step is the step's number, so their mean is 8; buffers (BN's
    # running statistics) are averaged as weights are
    model = torch.nn.Linear(1, 1, bias=False)
    model.register_buffer("running_mean", torch.zeros(1))
    hook = WeightAveraging(start_iter=3, period=4)
    hook.trainer = SimpleNamespace(model=model, max_iter=10, iter=0)
    hook.before_train()
    for step in range(1, 11):
        with torch.no_grad():
            model.weight.fill_(step)
            model.running_mean.fill_(step)
        hook.trainer.iter = step - 1
        hook.after_step()
    assert model.weight.item() == model.running_mean.item() == 8.0


def test_the_trainer_averages_by_its_keys_and_tells_the_model_each_step(tmp_path):
    cfg = load_config(str(SYNTHETIC_DA), [
        "SOLVER.MAX_ITER", "20", "MODEL.DA.START_ITER", "4", "SOLVER.WEIGHT_AVERAGING.ENABLED",
        "True", "SOLVER.WEIGHT_AVERAGING.START_ITER", "6", "SOLVER.WEIGHT_AVERAGING.PERIOD", "3",
        "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False", "OUTPUT_DIR", str(tmp_path)])
    trainer = DATrainer(cfg)
    (averaging,) = [hook for hook in trainer._hooks if isinstance(hook, WeightAveraging)]
    assert (averaging.start_iter, averaging.period) == (6, 3)
    # before step k (0-based), the model hears k: adaptation starts at step 4 and its GRL
    # schedule's progress is (k - 4) / 16
    (progress,) = [hook for hook in trainer._hooks if isinstance(hook, TrainingProgress)]
    for step, expected in ((3, 0.0), (4, 0.0), (12, 0.5), (19, 15 / 16)):
        trainer.iter = step
        progress.before_step()
        assert (trainer.model.iteration, trainer.model.training_progress) == (step, expected)

"""The training recipe end to end on tiny-bert: outputs, cache equivalence, divergence, eval/predict."""

import json

import pytest
import torch
from safetensors.torch import load_file

from softprompt.cli import main
from softprompt.train.config import TrainConfig
from softprompt.train.trainer import TrainingDiverged, train


def config(tmp_path, data_dir, **kw):
    base = dict(backbone="tiny-bert", task="sst2", method={"name": "id-spam"}, data_dir=str(data_dir), train_limit=64,
                eval_limit=32, epochs=2, batch_size=8, output_dir=str(tmp_path / "run"), progress=False, max_length=48)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_holds_config_metrics_adapter_and_summary(tmp_path, data_dir):
    summary = train(config(tmp_path, data_dir), log=lambda *a: None)
    run = tmp_path / "run"
    assert (run / "config.yaml").exists() and (run / "adapter" / "adapter.safetensors").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval" in r]
    assert [r["step"] for r in evals] == [8, 16]
    assert summary["best"] == max(r["eval"]["main"] for r in evals)
    # 64 rows: 6 carved for selection (10%), 58 trained on; the reported split is dev (eval_limit 32)
    assert summary["steps"] == 16 and summary["train_examples"] == 58 and summary["eval_examples"] == 32
    assert summary["boundary_layer"] == 1 and summary["cache_rows"] == 58
    assert len(summary["epoch_samples_per_s"]) == 2 and all(s > 0 for s in summary["epoch_samples_per_s"])
    assert summary["time_to_best_s"] is not None


@pytest.mark.parametrize("method", ["id-spam", "lpt"])
def test_frozen_state_cache_changes_nothing_but_speed(tmp_path, data_dir, method):
    a = train(config(tmp_path / "a", data_dir, method={"name": method}, cache="memory"), log=lambda *a: None)
    b = train(config(tmp_path / "b", data_dir, method={"name": method}, cache="none"), log=lambda *a: None)
    assert a["cache_rows"] == 58 and b["cache_rows"] == 0
    ta = load_file(str(tmp_path / "a" / "run" / "adapter" / "adapter.safetensors"))
    tb = load_file(str(tmp_path / "b" / "run" / "adapter" / "adapter.safetensors"))
    for k in ta:
        assert torch.allclose(ta[k], tb[k], atol=1e-6), k
    assert a["best_scores"] == b["best_scores"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_best_adapter(tmp_path, data_dir):
    at_eval, best = {}, {}

    def snapshot(trainer, step, scores):  # the weights each evaluation saw, and which one was best so far
        at_eval[step] = {k: v.detach().clone() for k, v in trainer.unwrapped.adapter_params().items()}
        if not best or scores["main"] > best["score"]:
            best.update(step=step, score=scores["main"])

    def poison(trainer, progress):
        if progress["global_step"] == 9:
            with torch.no_grad():
                for p in trainer.unwrapped.head.parameters():
                    p.fill_(float("nan"))

    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2"):
        train(config(tmp_path, data_dir), log=lambda *a: None, callbacks=[poison], eval_callbacks=[snapshot])
    tensors = load_file(str(tmp_path / "run" / "adapter" / "adapter.safetensors"))
    assert all(torch.isfinite(t).all() for t in tensors.values())
    expected = at_eval[best["step"]]
    assert set(tensors) == set(expected)
    assert all(torch.equal(tensors[k], expected[k].to(tensors[k].dtype)) for k in tensors)  # the best step's weights


def test_cli_train_eval_predict_round_trip(tmp_path, data_dir, capsys):
    run = tmp_path / "cli"
    assert main(["train", "--backbone", "tiny-bert", "--task", "sst2", "--method", "prompt-tuning", "--data-dir", str(data_dir),
                 "--train-limit", "32", "--eval-limit", "16", "--epochs", "1", "--batch-size", "8", "--output-dir", str(run),
                 "--progress", "false", "--lr", "3e-2"]) == 0
    assert main(["eval", str(run), "--task", "imdb", "--split", "test", "--limit", "20", "--data-dir", str(data_dir), "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out[out.index("["):])
    assert res[0]["task"] == "imdb" and res[0]["examples"] == 20 and res[0]["truncated"] > 0
    assert main(["predict", str(run), "a fine film"]) == 0
    pred = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert pred["label"] in ("negative", "positive") and abs(sum(pred["scores"].values()) - 1) < 1e-5


def test_eval_on_a_different_label_space_is_refused(tmp_path, data_dir, capsys):
    train(config(tmp_path, data_dir, epochs=1), log=lambda *a: None)
    assert main(["eval", str(tmp_path / "run"), "--task", "tweeteval", "--data-dir", str(data_dir)]) == 2
    assert "same label space" in capsys.readouterr().err


def test_bad_flag_value_names_the_field(capsys):
    assert main(["train", "--epochs", "zero"]) == 2
    assert "epochs" in capsys.readouterr().err


def test_seeds_flag_reports_mean_and_std(tmp_path, data_dir, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--backbone", "tiny-bert", "--method", "head-only", "--data-dir", str(data_dir), "--train-limit", "24",
                 "--eval-limit", "16", "--epochs", "1", "--batch-size", "8", "--output-dir", str(out), "--progress", "false",
                 "--seeds", "0,1"]) == 0
    agg = json.loads((out / "seeds_summary.json").read_text())
    assert agg["seeds"] == [0, 1] and len(agg["scores"]) == 2
    assert abs(agg["mean"] - sum(agg["scores"]) / 2) < 1e-9
    assert "±" in capsys.readouterr().out


def test_bf16_autocast_keeps_fp32_trainable_weights(tmp_path, data_dir):
    from softprompt.train.trainer import Trainer

    trainer = Trainer(config(tmp_path, data_dir, epochs=1, mixed_precision="bf16"), log=lambda *a: None).setup()
    dtypes = []
    linear = next(m for m in trainer.unwrapped.runner.layers[-1].modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda mod, args, out: dtypes.append(out.dtype))
    summary = trainer.train()
    assert summary["steps"] == 8
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the frozen layers ran under bf16 autocast
    assert all(p.dtype == torch.float32 for p in trainer.unwrapped.adapter_params().values())


def test_export_materialised_prompt_vectors(tmp_path):
    from softprompt.adapter import export_prompt_vectors
    from softprompt.errors import AdapterError
    from tests.core.helpers import build

    model = build("tiny-bert", "prefix-tuning")
    path = export_prompt_vectors(model, tmp_path / "prompt.safetensors")
    vectors = load_file(str(path))["prompt"]
    assert torch.allclose(vectors, model.producer(None)[0], atol=1e-6)
    with pytest.raises(AdapterError, match="input-independent"):
        export_prompt_vectors(build("tiny-bert", "id-spam"), tmp_path / "x.safetensors")

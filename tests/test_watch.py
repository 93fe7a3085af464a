"""Training you can watch: ``lft train --log tensorboard`` and ``lft plot RUN``.

The TensorBoard tests need the optional ``tensorboard`` package and are skipped without it;
the missing-package error is tested with the import made to fail for this test only.
"""

import json
import sys

import pytest

from lft.analysis.run_plot import DPI, PANEL_SIZE, collect, eval_curves
from lft.cli import main
from lft.meta.loggers import FanOut, TensorboardUnavailable, require_tensorboard

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["train", "--task", "sine", "--iterations", "3", "--meta-batch", "2", "--horizon", "3",
        "--quiet"]


def train(out, *extra) -> int:
    return main([*TINY, "--out", str(out), *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("lft: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def png_size(path) -> tuple[int, int]:
    """(height, width) in pixels of the PNG read back."""
    import matplotlib.image

    return matplotlib.image.imread(str(path)).shape[:2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "sine"
    assert train(out) == 0
    return out


def test_plot_of_a_train_run_writes_a_png_of_the_expected_size(run, capsys):
    capsys.readouterr()
    assert main(["plot", str(run)]) == 0
    written = run / "plot.png"
    assert capsys.readouterr().out.strip() == str(written)
    assert written.read_bytes()[:8] == PNG
    h, w = png_size(written)  # one panel: the meta-loss curve
    assert (h, w) == (round(PANEL_SIZE[1] * DPI), round(PANEL_SIZE[0] * DPI))
    curve = collect(run).training[0]
    assert curve.iterations == [r["iteration"] for r in records(run)]
    assert curve.meta_loss == [r["meta_loss"] for r in records(run)]


def rows(method, metric, steps, note=""):
    return [{"method": method, "oracle": "fo", "train_source": "sine", "test_source": "sine",
             "metric": metric, "step": k, "mean": 1.0 / (k + 1), "ci95": 0.1, "n": 4,
             "note": note} for k in range(steps)]


def test_evaluation_rows_beside_the_meta_loss_add_a_panel(run, tmp_path, capsys):
    doc = {"artefact": "evaluate", "rows": rows("lft", "mse", 4)}
    (run / "rows.json").write_text(json.dumps(doc))
    out = tmp_path / "both.png"
    try:
        assert main(["plot", str(run), "--out", str(out)]) == 0
    finally:
        (run / "rows.json").unlink()
    assert capsys.readouterr().out.strip() == str(out)
    assert png_size(out) == (round(PANEL_SIZE[1] * DPI), round(2 * PANEL_SIZE[0] * DPI))


def test_a_reproduce_folder_plots_its_logs_and_results(tmp_path, run, capsys):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "fo-lft.jsonl").write_text((run / "metrics.jsonl").read_text())
    versus = [{**r, "versus": "sgd"} for r in rows("lft", "mse", 3)]
    doc = {"artefact": "figure4", "rows": rows("lft", "mse", 5) + rows("sgd", "mse", 5)
           + versus + rows("adam", "mse", 1, note="lr=0.1, tuned for step 1")}
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "plot.png").read_bytes()[:8] == PNG
    curves = collect(tmp_path)
    assert [c.label for c in curves.training] == ["fo-lft"]
    assert [c.label for c in curves.evaluation] == ["lft/fo", "sgd/fo"]  # no pair, no point
    assert curves.evaluation[0].mean == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_rows_of_several_runs_under_one_key_are_split():
    curves = eval_curves({"rows": rows("lft", "mse", 3) * 2 + rows("lft", "accuracy", 3)})
    assert [(c.label, c.metric, c.steps) for c in curves] == [
        ("lft/fo #1", "mse", [0, 1, 2]), ("lft/fo #2", "mse", [0, 1, 2]),
        ("lft/fo", "accuracy", [0, 1, 2])]


def test_plot_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert main(["plot", str(tmp_path)]) == 2  # an empty folder: nothing to draw
    assert "no meta-loss record" in one_line_error(capsys)
    (tmp_path / "metrics.jsonl").write_text('{"iteration": 0, "meta_l')  # cut by kill -9
    assert main(["plot", str(tmp_path)]) == 2
    one_line_error(capsys)
    assert main(["plot", str(tmp_path), "--results", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in one_line_error(capsys)
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.pdf")]) == 2
    assert ".png" in one_line_error(capsys)
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "x.pdf").exists()


def test_fan_out_passes_every_record_and_closes_what_can_be_closed():
    seen, closed = [], []

    class Closable(list):
        def __call__(self, rec):
            self.append(rec)

        def close(self):
            closed.append(True)

    box = Closable()
    log = FanOut(seen.append, None, box)
    log({"iteration": 0})
    log({"iteration": 1})
    log.close()
    assert seen == box == [{"iteration": 0}, {"iteration": 1}] and closed == [True]


def test_missing_tensorboard_is_one_line_naming_the_install_and_makes_no_folder(
        tmp_path, monkeypatch, capsys):
    with pytest.raises(TensorboardUnavailable, match="pip install tensorboard"):
        require_tensorboard(("lft_no_such_module",))
    for name in ("tensorboard", "torch.utils.tensorboard"):  # import fails for this test only
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "run"
    assert train(out, "--log", "tensorboard") == 2
    assert "pip install tensorboard" in one_line_error(capsys)
    assert not out.exists()


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard shows from the event files under ``folder``, as tag ->
    [(step, value), ...] (a step written twice would show twice)."""
    acc = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    ea = acc.EventAccumulator(str(folder))
    ea.Reload()
    return {tag: [(e.step, e.value) for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def as_float32(x: float) -> float:
    import struct

    return struct.unpack("f", struct.pack("f", x))[0]


def assert_scalars_match_the_jsonl(run):
    recs = records(run)
    got = scalars(run / "tensorboard")
    assert set(got) == set(recs[0]) - {"iteration"}
    for tag, points in got.items():
        assert points == [(r["iteration"], as_float32(r[tag])) for r in recs], tag


def test_tensorboard_scalars_equal_the_metrics_jsonl(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert train(out, "--log", "tensorboard") == 0
    assert "tensorboard: " in capsys.readouterr().out
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert_scalars_match_the_jsonl(out)
    assert train(out, "--log", "tensorboard", "--seed", "1") == 0  # a new run in the folder
    assert_scalars_match_the_jsonl(out)  # shows only the new run's curves, like the jsonl


def test_tensorboard_resume_appends_and_hides_the_redone_steps(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    from lft import resume as runs

    out = tmp_path / "run"
    calls = []  # stop (as on SIGTERM) after the second meta-iteration: checkpoint at 2
    monkeypatch.setattr(runs.StopOnSignal, "__call__", lambda self: calls.append(1) or
                        len(calls) >= 2)
    assert train(out, "--log", "tensorboard", "--checkpoint-every", "1") == 143
    monkeypatch.undo()
    with SummaryWriter(str(out / "tensorboard")) as w:  # logged by a run killed after it
        w.add_scalar("meta_loss", 1e6, global_step=2)
    assert train(out, "--log", "tensorboard", "--checkpoint-every", "1", "--resume") == 0
    assert [r["iteration"] for r in records(out)] == [0, 2]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 3
    assert_scalars_match_the_jsonl(out)

"""Fuzzing the configuration schema with hypothesis (issue 6, item 5).

Random dicts for ``rules.build``, ``build_oracle``, ``MethodConfig.from_dict`` (then
``Method``), ``TrainConfig.from_dict`` and ``build_family`` give either a valid object or a
``ValueError`` with a one-line message: never another exception type. Random option values on
``lft train`` give exit status 0 or a one-line ``lft: error:`` with status 2 and no run folder.
"""

import atexit
import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lft import rules
from lft.cli import main
from lft.meta import Method, MethodConfig, TrainConfig
from lft.oracles import build_oracle
from lft.tasks import FAMILIES, SineFamily, TaskFamily, build_family
from lft.validation import parameters_of

torch.set_num_threads(1)
#: examples per test; LFT_FUZZ_EXAMPLES=2000 for a thorough run
FUZZ = settings(max_examples=int(os.environ.get("LFT_FUZZ_EXAMPLES", "60")), deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
EMPTY = tempfile.mkdtemp(prefix="lft-fuzz-nodata-")  # image families fail here: no data
atexit.register(shutil.rmtree, EMPTY, True)

leaf = st.one_of(st.none(), st.booleans(), st.integers(-3, 40),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
value = st.one_of(leaf, st.lists(leaf, max_size=3), st.dictionaries(st.text(max_size=4), leaf,
                                                                     max_size=2))


def options(names: list[str]) -> st.SearchStrategy[dict]:
    """Dicts over known option names (plus a stray one) with values of any kind."""
    return st.dictionaries(st.sampled_from(names + ["junk"]), value, max_size=4)


RULE_OPTIONS = sorted({n for cls in rules.RULES.values() for n in parameters_of(cls.__init__)})
FEATURES = st.lists(st.sampled_from(["logsign", "adam", "role", "raw", "param", "nope"]),
                    max_size=3)
simple_rule = st.builds(
    lambda kind, opts, feats: {"type": kind, **opts, **({"features": feats} if feats else {})},
    st.sampled_from(["lstm", "sgd", "adam", "signsgd", "foo", 3]),
    options([n for n in RULE_OPTIONS if n != "rules"]), st.one_of(st.none(), FEATURES))
rule_config = st.one_of(simple_rule, st.builds(lambda parts: {"type": "sum", "rules": parts},
                                               st.lists(simple_rule, max_size=3)), value)
oracle_config = st.one_of(
    st.builds(lambda kind, opts: {"type": kind, **opts}, st.sampled_from(["fo", "zo", "xo"]),
              options(["q", "mu", "directions", "scheme", "differentiable", "second_order"])),
    value)


def assert_valid_or_value_error(build, kind):
    """``build()`` returns a ``kind`` or raises a one-line ``ValueError``; nothing else."""
    try:
        obj = build()
    except ValueError as e:
        text = str(e)
        assert text and "\n" not in text, repr(text)
        return None
    assert isinstance(obj, kind)
    return obj


@FUZZ
@given(rule_config)
def test_rule_configs(config):
    rule = assert_valid_or_value_error(lambda: rules.build(config), rules.UpdateRule)
    if rule is not None:  # a rule that builds also runs
        theta = torch.zeros(2, 3)
        roles = torch.zeros(3, dtype=torch.long)
        delta, _ = rule.update(torch.ones(2, 3), rule.init(theta, roles), theta)
        assert delta.shape == theta.shape


@FUZZ
@given(oracle_config)
def test_oracle_configs(config):
    assert_valid_or_value_error(lambda: build_oracle(config), object)


FIELDS = list(MethodConfig.__dataclass_fields__)
method_values = {"rule": rule_config, "oracle": oracle_config,
                 "horizon": st.one_of(st.integers(-2, 4), value),
                 "truncation": st.one_of(st.none(), st.integers(-1, 4), value),
                 "weighting": st.one_of(st.sampled_from(["uniform", "linear", "final"]), value),
                 "meta_split": st.one_of(st.sampled_from(["val", "train"]), value)}
method_config = st.dictionaries(st.sampled_from(FIELDS + ["junk"]), value, max_size=4).flatmap(
    lambda d: st.fixed_dictionaries({k: method_values.get(k, st.just(v)) for k, v in d.items()}))


@FUZZ
@given(method_config)
def test_method_configs(config):
    cfg = assert_valid_or_value_error(lambda: MethodConfig.from_dict(config), MethodConfig)
    if cfg is not None:
        assert_valid_or_value_error(lambda: Method(cfg, SineFamily(hidden=(4,))), Method)


@FUZZ
@given(st.dictionaries(st.sampled_from(list(TrainConfig.__dataclass_fields__) + ["junk"]),
                       st.one_of(value, st.integers(1, 8)), max_size=4))
def test_train_configs(config):
    assert_valid_or_value_error(lambda: TrainConfig.from_dict(config), TrainConfig)


FAMILY_OPTIONS = sorted({n for cls in FAMILIES.values() for n in parameters_of(cls.__init__)})
members = st.lists(st.one_of(st.just({"task": "sine", "hidden": [3]}), value), max_size=3)
family_values = {"families": st.one_of(members, value), "hidden": st.lists(leaf, max_size=2),
                 "amplitude": st.lists(leaf, max_size=3)}
family_config = st.builds(
    lambda task, opts: {"task": task, **opts},
    st.sampled_from(["sine", "classification", "uap", "mixture", "imagenet", None]),
    options(FAMILY_OPTIONS).flatmap(lambda d: st.fixed_dictionaries(
        {k: family_values.get(k, st.just(v)) for k, v in d.items()})))


@FUZZ
@given(family_config)
def test_family_configs(config):
    if config["task"] in ("classification", "uap"):
        config["data_dir"] = EMPTY  # never read (or train a victim on) a real data folder
    assert_valid_or_value_error(lambda: build_family(config), TaskFamily)


NUMBERS = ["1", "2", "3", "0", "-1", "1.5", "nan", "inf", "x", ""]


@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"--iterations": st.sampled_from(NUMBERS[:1] + NUMBERS[3:]),
                              "--meta-batch": st.sampled_from(NUMBERS),
                              "--horizon": st.sampled_from(NUMBERS),
                              "--task-streams": st.sampled_from(NUMBERS),
                              "--meta-lr": st.sampled_from(["1e-3", "0", "-1", "nan", "x"]),
                              "--method": st.sampled_from(["lft", "l2o", "maml", "x"])}))
def test_train_command_line(opts):
    """Valid combinations train (one iteration, small batches); all others exit 2 in one line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        argv = ["train", "--quiet", "--out", str(out)]
        for k, v in opts.items():
            argv += [f"{k}={v}"]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code
        text = err.getvalue()
        assert "Traceback" not in text
        if code == 0:
            assert (out / "checkpoint.safetensors").is_file()
        else:
            assert code == 2 and text.startswith("lft: error: ") and text.count("\n") == 1
            assert not out.exists()

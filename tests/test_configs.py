"""The typed rule, oracle and task-family configurations (issue 16).

Every configuration the code base has written (the shipped fine-tuners, the committed
checkpoints and results, the presets, the profiles' jobs) reads into the typed classes and
writes back byte for byte; the checkpoints still load; each kind's dataclass mirrors its
class's constructor (names, order, defaults: the one table of a kind's defaults); the library
defaults are the typed ones; bad configurations fail once, in one line.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from pathlib import Path

import pytest
from safetensors import safe_open

from lft import checkpoint, oracles, rules, tasks
from lft.finetuner import FineTuner, fine_tuner_method
from lft.meta import Method, MethodConfig, preset
from lft.meta.learners import METHODS
from lft.oracles import DEFAULT_FO, DEFAULT_ZO, OracleConfig, ZerothOrderConfig
from lft.rules import DEFAULT_LSTM, LSTMConfig, RuleConfig, SGDConfig, SumConfig
from lft.tasks import FamilyConfig, SineConfig, SineFamily
from lft.tasks.presets import TASKS, family_config, with_data_dir
from lft.typed import TypedConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SHIPPED = sorted((ROOT / "src" / "lft" / "pretrained").glob("*.safetensors"))
COMMITTED = sorted((ROOT / "results").glob("**/checkpoints/*.safetensors"))
RESULTS = sorted((ROOT / "results").glob("**/results.json"))
REGISTRIES = [(OracleConfig, oracles.ORACLES), (RuleConfig, rules.RULES),
              (FamilyConfig, tasks.FAMILIES)]


def header(path: Path) -> dict:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def assert_round_trip(base, stored: dict) -> None:
    """``stored`` read by ``base`` writes back equal and as the same JSON bytes."""
    again = base.from_dict(stored).to_dict()
    assert again == stored
    assert json.dumps(again) == json.dumps(stored)


def assert_method_round_trip(method: dict) -> None:
    assert_round_trip(RuleConfig, method["rule"])
    assert_round_trip(OracleConfig, method["oracle"])
    assert json.dumps(MethodConfig.from_dict(method).to_dict()) == json.dumps(method)


def configurations(data) -> tuple[list[dict], list[dict]]:
    """The method and family configurations anywhere in ``data`` (a results.json)."""
    methods, families = [], []

    def walk(x):
        if isinstance(x, dict):
            if isinstance(x.get("task"), str):
                families.append(x)
                return
            if isinstance(x.get("rule"), dict) and isinstance(x.get("oracle"), dict):
                methods.append(x)
            for value in x.values():
                walk(value)
        elif isinstance(x, list):
            for value in x:
                walk(value)
    walk(data)
    return methods, families


# -- what is stored round-trips ------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED + COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_checkpoint_configurations_round_trip(path):
    meta = header(path)
    method, family = json.loads(meta["method"]), json.loads(meta["family"])
    assert_method_round_trip(method)
    assert_round_trip(FamilyConfig, family)
    # the header bytes themselves, as checkpoint.save writes them
    assert json.dumps(MethodConfig.from_dict(method).to_dict()) == meta["method"]
    assert json.dumps(FamilyConfig.from_dict(family).to_dict()) == meta["family"]


def test_there_are_stored_checkpoints_to_check():
    assert len(SHIPPED) >= 6 and len(COMMITTED) >= 50 and len(RESULTS) >= 10


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_results_configurations_round_trip(path):
    methods, families = configurations(json.loads(path.read_text()))
    assert methods or families
    for method in methods:
        assert_method_round_trip(method)
    for family in families:
        assert_round_trip(FamilyConfig, family)


@pytest.mark.parametrize("zo", [False, True])
@pytest.mark.parametrize("name", METHODS)
def test_presets_round_trip(name, zo):
    assert_method_round_trip(preset(name, zo=zo).to_dict())


@pytest.mark.parametrize("task", TASKS)
def test_named_family_configurations_round_trip(task):
    assert_round_trip(FamilyConfig, family_config(task, "/data"))
    if task.startswith("uap-"):
        assert_round_trip(FamilyConfig, family_config(task, None, eps=2.0, norm="inf"))


def test_profile_jobs_round_trip(tmp_path):
    from lft.experiments import figure4, table2

    jobs = [job for prof in figure4.PROFILES.values()
            for job in figure4.make_jobs(prof, tmp_path, 0)]
    jobs += [job for prof in table2.PROFILES.values()
             for job in table2.make_jobs(prof, tmp_path, 0, "/data")]
    for job in jobs:
        assert_method_round_trip(job.method)
        for family in [job.family, *(job.tests or {}).values()]:
            assert_round_trip(FamilyConfig, family)


# -- and loads ---------------------------------------------------------------------------------


_BUILT: dict[str, object] = {}


def with_victims(config, victims: dict):
    """A family configuration with each UAP part's victim the quick one of its source."""
    if isinstance(config, dict):
        if config.get("task") == "uap":
            return {**config, "victim": str(victims[config["source"]].path)}
        return {k: with_victims(x, victims) for k, x in config.items()}
    if isinstance(config, list):
        return [with_victims(x, victims) for x in config]
    return config


def family_of(text: str, request):
    """The family a checkpoint was meta-trained on, built from its typed configuration (image
    families on the shared data copies, UAP ones against quick victims); once per family."""
    if text not in _BUILT:
        config = json.loads(text)
        if config.get("task") != "sine":  # the victims fixture skips where there is no data
            victims = request.getfixturevalue("victims")
            config = with_victims(with_data_dir(config, str(SHARED)), victims)
        _BUILT[text] = tasks.build_family(FamilyConfig.from_dict(config))
    return _BUILT[text]


@pytest.mark.parametrize("path", SHIPPED + COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_checkpoints_load(path, request):
    meta = header(path)
    family = family_of(meta["family"], request)
    method, _, _ = checkpoint.load(path, family=family)
    assert json.dumps(method.config.to_dict()) == meta["method"]
    if method.config.learn_rule:
        assert fine_tuner_method(path, family).rule.config() == method.rule.config()
    if path in SHIPPED:
        assert FineTuner.load(path.stem).rule.config() == method.rule.config()


# -- one table of defaults -----------------------------------------------------------------


def test_every_kind_has_a_typed_configuration_mirroring_its_constructor():
    for base, classes in REGISTRIES:
        configs = base.kinds()
        assert set(configs) == set(classes)
        for kind, config in configs.items():
            assert config.DERIVED is None, kind  # written by hand
            params = inspect.signature(classes[kind].__init__).parameters
            names = [n for n in params if n != "self"]
            assert [f.name for f in dataclasses.fields(config)] == names, kind
            for f in dataclasses.fields(config):
                default = params[f.name].default
                if default is inspect.Parameter.empty:
                    assert f.default is dataclasses.MISSING, (kind, f.name)
                else:
                    assert f.default == default, (kind, f.name)


def test_the_library_defaults_are_the_typed_ones():
    assert preset("lft", zo=True).oracle == DEFAULT_ZO.to_dict()
    assert preset("lft").oracle == DEFAULT_FO.to_dict() == MethodConfig().oracle
    assert preset("lft").rule == DEFAULT_LSTM.to_dict() == MethodConfig().rule
    assert json.dumps(DEFAULT_ZO.to_dict()) == (
        '{"type": "zo", "q": 20, "mu": 0.005, "directions": "gaussian", "scheme": '
        '"antithetic", "differentiable": false}')
    assert DEFAULT_ZO == ZerothOrderConfig(scheme="antithetic")  # only the scheme differs
    assert DEFAULT_LSTM == LSTMConfig(features=("logsign", "adam", "role"), output_scale=1.0)
    # a configuration that names no scheme keeps the zo type's default: forward differences
    assert oracles.build_oracle({"type": "zo"}).scheme == "forward"
    lstm = rules.build(DEFAULT_LSTM)
    assert (lstm.features, lstm.output_scale) == (("logsign", "adam", "role"), 1.0)


# -- typed behaviour ---------------------------------------------------------------------------


def test_a_read_configuration_writes_back_what_it_was_given():
    given = {"type": "sum", "rules": [{"lr": 0.1, "type": "sgd"}, {"type": "lstm", "p": 10}]}
    config = RuleConfig.from_dict(given)
    assert isinstance(config, SumConfig) and config.rules[0] == SGDConfig(lr=0.1)
    assert json.dumps(config.to_dict()) == json.dumps(given)  # key order and the int 10 kept
    assert config.rules[1] == LSTMConfig()  # equal: both build the default LSTM
    assert SineConfig().to_dict()["amplitude"] == [0.1, 5.0]
    assert FamilyConfig.from_dict({"task": "sine"}).to_dict() == {"task": "sine"}
    assert SineConfig(hidden=[8]).hidden == (8,)  # lists are held as tuples


def test_builders_take_typed_or_dict_configurations():
    assert rules.build(SGDConfig(lr=0.5)).lr == rules.build({"type": "sgd", "lr": 0.5}).lr
    zo = oracles.build_oracle(ZerothOrderConfig(q=3))
    assert zo.config() == oracles.build_oracle({"type": "zo", "q": 3}).config()
    mixture = tasks.build_family({"task": "mixture", "families": [SineConfig(hidden=(4,)),
                                                                   {"task": "sine"}]})
    assert [f.config()["hidden"] for f in mixture.families] == [[4], [40, 40]]
    assert tasks.build_family(SineConfig(shots=3)).shots == 3


def test_building_reads_and_checks_a_configuration_once(monkeypatch):
    rule = RuleConfig.from_dict({"type": "sum", "rules": [{"type": "sgd"}, {"type": "lstm"}]})
    oracle = OracleConfig.from_dict({"type": "history", "q": 3, "m": 1})
    family = FamilyConfig.from_dict({"task": "mixture", "families": [{"task": "sine"}] * 2})
    cfg, sine = preset("lft"), SineFamily(hidden=(4,))
    reads = []
    real = TypedConfig.from_dict.__func__
    monkeypatch.setattr(TypedConfig, "from_dict",
                        classmethod(lambda cls, d: reads.append(d) or real(cls, d)))
    rules.build(rule), oracles.build_oracle(oracle), tasks.build_family(family)
    assert reads == []  # typed: built as it is
    Method(cfg, sine)
    assert reads == [cfg.rule, cfg.oracle]  # the method's rule and oracle, read once each


def test_a_method_config_stores_typed_parts_as_json_and_returns_them_checked():
    cfg = MethodConfig(rule=SGDConfig(lr=0.2), oracle=ZerothOrderConfig(q=4), learn_rule=False)
    assert cfg.rule == {"type": "sgd", "lr": 0.2, "momentum": 0.0}
    assert cfg.oracle["q"] == 4 and cfg.oracle_kind == "zo"
    rule, oracle = cfg.validate()
    assert rule == SGDConfig(lr=0.2) and oracle == ZerothOrderConfig(q=4)


def test_configurations_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_ZO.q = 5


@pytest.mark.parametrize("base,bad,match", [
    (OracleConfig, {"type": "xo"}, r"unknown gradient oracle 'xo'; choose 'fo' .* 'zo'"),
    (OracleConfig, {"type": "zo", "qq": 3}, r"gradient oracle 'zo': unknown option\(s\) qq; "
                                           "known: differentiable, directions, mu, q, scheme"),
    (OracleConfig, {"type": "zo", "q": 0}, "q .* must be an integer >= 1, got 0"),
    (OracleConfig, {"type": "zo", "directions": "x"}, "unknown directions 'x'; choose from "
                                                      "gaussian"),
    (OracleConfig, {"type": "subspace", "q": 2}, "dim"),
    (ZerothOrderConfig, {"type": "history"}, r"choose from \['zo'\]"),
    (RuleConfig, {"type": "rmsprop"}, "unknown update rule 'rmsprop'; choose from"),
    (RuleConfig, {"type": "lstm", "hidden": 0}, "update rule 'lstm': hidden must be"),
    (RuleConfig, {"type": "sum"}, r"update rule 'sum': missing option\(s\) rules"),
    (RuleConfig, {"type": "sum", "rules": [{"type": "sgd", "lr": -1}]}, "lr"),
    (RuleConfig, {"type": "scheduled", "rule": {"type": "sgd"}, "steps": 2, "init": [1.0]},
     "init must list 2"),
    (FamilyConfig, {"task": "imagenet"}, "unknown task family 'imagenet'"),
    (FamilyConfig, {"task": "sine", "k": 1}, r"unknown option\(s\) k"),
    (FamilyConfig, {"task": "sine", "amplitude": [5, 1]}, "low <= high"),
    (FamilyConfig, {"task": "mixture", "families": [{"task": "sine"}]}, "at least two"),
    (FamilyConfig, {"task": "uap", "eps": -1}, "eps"),
    (FamilyConfig, {"task": "classification", "model": "resnet"}, "unknown classifier"),
    (FamilyConfig, [1], "must be a dict"),
])
def test_bad_configurations_fail_in_one_line(base, bad, match):
    with pytest.raises(ValueError, match=match) as e:
        base.from_dict(bad)
    assert "\n" not in str(e.value)


def test_a_bad_part_of_a_method_names_the_method():
    with pytest.raises(ValueError, match=r"method 'lft': oracle: .*unknown option\(s\) qq"):
        preset("lft", oracle={"qq": 1})
    with pytest.raises(ValueError, match="method 'x': rule: unknown update rule 'foo'"):
        MethodConfig(name="x", rule={"type": "foo"})


def test_sine_defaults_are_the_constructors():
    assert SineConfig().phase == (0.0, math.pi)
    assert SineFamily().config() == SineConfig().to_dict()


def test_a_class_of_your_own_gets_a_configuration_from_its_constructor():
    class Lion(rules.SGD):
        kind = "lion"

        def __init__(self, lr: float = 1e-3, beta: float = 0.9, betas: list | None = None):
            super().__init__(lr)
            self.beta = beta

    class Quadratic(SineFamily):
        def __init__(self, shots=8):
            super().__init__(shots=shots)

    rules.RULES["lion"], tasks.FAMILIES["quadratic"] = Lion, Quadratic
    try:
        config = RuleConfig.from_dict({"type": "lion", "beta": 0.5})
        assert config.to_dict() == {"type": "lion", "beta": 0.5}
        assert type(config).__name__ == "LionConfig" and config.lr == 1e-3
        assert rules.build(config).beta == 0.5
        assert rules.build({"type": "sum", "rules": [{"type": "lion"}]}).parts[0].beta == 0.9
        with pytest.raises(ValueError, match=r"update rule 'lion': unknown option\(s\) gamma"):
            rules.build({"type": "lion", "gamma": 1})
        assert tasks.build_family({"task": "quadratic", "shots": 3}).shots == 3
    finally:
        del rules.RULES["lion"], tasks.FAMILIES["quadratic"]
    with pytest.raises(ValueError, match="unknown update rule 'lion'"):
        rules.build({"type": "lion"})

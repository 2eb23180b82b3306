"""Network config: schema defaults, round trip, key-path errors, bad values."""

import pytest

from hm2bp import ConfigError, Network, load_config

MNIST_TOML = """
steps = 400
[neuron]
tau_m = 64.0
tau_s = 8.0
refractory = 2
[[layers]]
name = "hidden"
type = "dense"
size = 800
threshold = 20.0
init = { kind = "uniform", scale = 1.0 }
[[layers]]
name = "output"
type = "dense"
size = 10
threshold = 8.0
lateral_inhibition = 1.0
[loss]
desired = 35
undesired = 5
margin = 5
[train]
optimizer = "adam"
lr = 1e-3
batch_size = 1
[regularizer]
lambda = 10.0
beta = 0.04
weight_limit = 8.0
"""


def test_toml_file_and_round_trip(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text(MNIST_TOML)
    cfg = load_config(path)
    assert cfg.steps == 400 and [s.name for s in cfg.layers] == ["hidden", "output"]
    assert cfg.output.lateral_inhibition == 1.0 and cfg.layers[0].size == 800
    assert cfg.layers[1].neuron.tau_m == 64.0 and cfg.regularizer.lam == 10.0
    assert cfg.train.effect_ratio is True and cfg.train.lr_batch_scaling == "none"
    assert load_config(cfg.to_dict()) == cfg
    assert load_config(cfg) is cfg


def test_layer_neuron_override_and_replace_train():
    cfg = load_config({"steps": 100, "neuron": {"tau_m": 32.0},
                       "layers": [{"name": "a", "size": 3, "threshold": 1.0, "refractory": 1},
                                  {"name": "b", "size": 2, "threshold": 1.0, "neuron": {"tau_s": 4.0}}]})
    assert cfg.layers[0].neuron.tau_m == 32.0 and cfg.layers[0].neuron.refractory == 1
    assert cfg.layers[1].neuron.tau_s == 4.0 and cfg.layers[1].neuron.refractory == 2
    assert load_config(cfg.to_dict()) == cfg
    new = cfg.replace_train(batch_size=16, lr_batch_scaling="sqrt")
    assert new.train.batch_size == 16 and cfg.train.batch_size == 1 and new.layers == cfg.layers
    with pytest.raises(ConfigError, match="train.batch_size"):
        cfg.replace_train(batch_size=0)


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["layers"][1].update(treshold=3.0), r"layers\[1\]\.treshold: unknown key; known:"),
    (lambda d: d.update(extra=1), r"^extra: unknown key"),
    (lambda d: d["train"].update(lr_shedule="x"), r"train\.lr_shedule: unknown key"),
    (lambda d: d["layers"][0].update(init={"kind": "uniform", "scal": 1}), r"layers\[0\]\.init\.scal"),
    (lambda d: d["layers"][0].update(size=-5), r"layers\[0\]\.size: must be >= 1"),
    (lambda d: d["layers"][0].update(type="lstm"), r"layers\[0\]\.type: 'lstm' is not one of"),
    (lambda d: d["layers"][0].update(threshold=0), r"layers\[0\]\.threshold: must be > 0"),
    (lambda d: d["layers"][0].update(size=2.5), r"layers\[0\]\.size: expected an integer"),
    (lambda d: d["layers"][0].update(size=True), r"layers\[0\]\.size: expected a number"),
    (lambda d: d["layers"][1].update(name="hidden"), r"layers\[1\]\.name: duplicate"),
    (lambda d: d["neuron"].update(tau_s=64.0), r"neuron: tau_m and tau_s must differ"),
    (lambda d: d["train"].update(optimizer="rmsprop"), r"train\.optimizer"),
    (lambda d: d["train"].update(effect_ratio="yes"), r"train\.effect_ratio: expected true or false"),
    (lambda d: d["regularizer"].update(weight_limit=0.0), r"regularizer\.weight_limit: must be > 0"),
    (lambda d: d.update(steps=0), r"steps: must be >= 2"),
    (lambda d: d.update(layers=[]), r"layers: expected a non-empty array"),
    (lambda d: d["loss"].update(desired=500), r"loss\.desired"),
])
def test_bad_configs_rejected(mutate, match):
    cfg = load_config({"steps": 400, "layers": [{"name": "hidden", "size": 8, "threshold": 2.0},
                                                {"name": "output", "size": 3, "threshold": 1.0}]})
    d = cfg.to_dict()
    mutate(d)
    with pytest.raises(ConfigError, match=match):
        load_config(d)


def test_missing_file_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_conv_parsed_but_not_built():
    cfg = {"steps": 50, "layers": [{"name": "c1", "type": "conv", "channels": 4, "kernel": 5, "threshold": 5.0},
                                   {"name": "p1", "type": "pool", "window": 2, "threshold": 2.0},
                                   {"name": "output", "size": 10, "threshold": 8.0}]}
    parsed = load_config(cfg)
    assert parsed.layers[0].kernel == 5 and parsed.layers[1].window == 2
    assert load_config(parsed.to_dict()) == parsed
    net = Network.from_config(cfg, 784, input_shape=(1, 28, 28))
    assert tuple(net.weights()["c1"].shape) == (4, 1, 5, 5) and net.layer("p1").weight is None


def test_seeded_uniform_init():
    cfg = {"steps": 50, "train": {"seed": 3},
           "layers": [{"name": "output", "size": 6, "threshold": 1.0, "init": {"kind": "uniform", "scale": 0.5}}]}
    a, b = Network.from_config(cfg, 40), Network.from_config(cfg, 40)
    w = a.layer("output").weight
    assert w.shape == (6, 40) and w.dtype.is_floating_point and bool((w.abs() <= 0.5).all())
    assert bool((w == b.layer("output").weight).all()) and w.abs().max() > 0.4

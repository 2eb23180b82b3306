"""The ahead-of-time compile check of the triton kernel set (`hm2bp.kernels.triton.aot`, driven by the cases of
`tests/hm2bp/triton_cases.py`): every kernel variant the training steps of the presets and their variations launch
compiles to cubin for sm_80, sm_89 and sm_90, without a GPU; the recording on shape-only tensors launches exactly
what a real step launches."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the compile check needs the triton package (test dependency)")

from hm2bp import Network  # noqa: E402
from hm2bp.kernels.triton import aot  # noqa: E402
from hm2bp.train.optim import Adam  # noqa: E402
from tests.hm2bp import triton_cases  # noqa: E402
from tests.hm2bp.test_backends import TRITON_DEVICE  # noqa: E402
from tests.hm2bp.test_gradients import CFG  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = REPO / "hm2bp" / "kernels" / "triton"


def test_describe_keeps_what_triton_specialises_on():
    x = torch.zeros(40, dtype=torch.float32)
    assert aot.describe(x) == aot.Pointer("float32", 0)
    assert aot.describe(x[1:]) == aot.Pointer("float32", 4)  # a view 4 bytes in: not 16-byte aligned
    assert aot.describe(x[4:]) == aot.Pointer("float32", 0)
    assert aot.describe(torch.zeros(8, 3, dtype=torch.int16)[1]) == aot.Pointer("int16", 6)
    assert aot.describe(torch.zeros(2, dtype=torch.bool, device="meta")[1:]) == aot.Pointer("bool", 1)
    assert [aot.describe(v) for v in (1, 16, 2.5, True)] == [1, 16, 2.5, True]


def test_forbidden_ptx_instructions_are_found():
    ptx = "\tld.global.f32 %f1, [%rd1];\n\t@%p1 atom.global.add.f32 %f2, [%rd2], %f1;\n\tredux.sync.add.s32 %r1, %r2;"
    assert [m[1] for m in aot.FORBIDDEN_PTX.finditer(ptx)] == ["atom"]
    assert [m[1] for m in aot.FORBIDDEN_PTX.finditer("  @!%p3 red.global.add.f64 [%rd1], %fd1;\n")] == ["red"]
    assert not aot.FORBIDDEN_PTX.search("\tfma.rn.f64 %fd3, %fd1, %fd2, %fd3;\n\tshfl.sync.bfly.b32 %r1;")


def test_cases_cover_presets_batches_and_variations():
    from hm2bp.presets import preset_names

    names = [c.name for c in triton_cases.cases()]
    assert set(preset_names()) <= set(names)
    for base in ("mnist-mlp", "mnist-cnn"):
        for lateral in (0, 1):
            for reg in (0, 1):
                for effect in (0, 1):
                    assert f"{base} lateral={lateral} reg={reg} effect={effect}" in names
        assert {f"{base} refractory={r}" for r in (0, 1, 3)} <= set(names)
    assert all(set(triton_cases.BATCHES) <= set(c.batches) for c in triton_cases.cases() if not c.name.startswith("1"))


@pytest.mark.parametrize("batch", [1, 3])
def test_meta_recording_is_what_a_real_step_launches(batch):
    """A training step run for real (on a GPU; elsewhere on CPU tensors under the interpreter, with the tiles a GPU
    uses) and the same step on shape-only tensors launch the same kernels with the same specialisation-relevant
    arguments, in order."""
    recorded = {}
    for device in (TRITON_DEVICE, "meta"):
        net = Network.from_config(CFG, 14, backend="triton").to(device)
        net.kernels.wide_tiles = False
        optimizer = Adam(net.weights(), 1e-3, kernels=net.kernels)
        with aot.recorder() as launches:
            triton_cases.training_step(net, optimizer, batch, 1e-3)
        recorded[device] = launches
    assert recorded[TRITON_DEVICE] == recorded["meta"]
    names = {launch.name for launch in recorded["meta"]}
    assert {"lif_scan_kernel", "spsp_readout_kernel", "column_lists_kernel", "dense_grad_kernel", "finish_dense_kernel",
            "adam_kernel", "output_stage_kernel", "lateral_factor_kernel"} <= names


def test_every_jit_function_of_the_package_is_found():
    """The kernel list comes from the package itself: every `@triton.jit` definition in its sources is either a
    kernel or a helper that a kernel calls."""
    kernels = aot.jit_kernels()
    decorated = sum(len(re.findall(r"^@triton\.jit", p.read_text(), re.MULTILINE)) for p in KERNEL_DIR.glob("*.py"))
    assert len(aot.jit_functions()) == decorated
    assert "hm2bp.kernels.triton.effect:_post_tile" not in kernels  # a helper, compiled into dense_effect_kernel
    assert len(kernels) == decorated - 1


def test_every_kernel_variant_compiles_for_sm80_sm89_sm90(tmp_path):
    """The whole check, as CI runs it: record, specialise, compile every variant to cubin with Triton's bundled
    ptxas; prints registers and spills per variant. Under 4 minutes on 2 cores from a cold cache."""
    out = tmp_path / "aot.json"
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    proc = subprocess.run([sys.executable, "-m", "tests.hm2bp.triton_cases", "--report", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    report = json.loads(out.read_text())
    assert report["targets"] == [80, 89, 90] and not report["unlaunched"]
    kernels = {v["kernel"] for v in report["variants"]}
    assert kernels == set(report["kernels"]) and len(kernels) >= 12
    for v in report["variants"]:
        for arch in ("80", "89", "90"):
            result = v["results"][arch]
            assert "error" not in result and result["registers"] > 0 and not result["forbidden"], (v, arch)
    # the traps of an int equal to 1 were reached: a batch of one, layers of one neuron, a refractory period of 1
    batch_one = [v for v in report["variants"] if "finish_dense_kernel" in v["kernel"]
                 and any(c.startswith("mnist-mlp") for c in v["cases"])]
    assert batch_one and all("batch=" not in v["specialisation"] for v in batch_one)  # never a constant
    assert any("n_pre=1" in v["specialisation"] for v in report["variants"] if "finish_dense" in v["kernel"])
    assert any(v["launch"]["args"][10] == 1 for v in report["variants"] if "lif_scan" in v["kernel"])
    assert np.median([v["results"]["90"]["registers"] for v in report["variants"]]) < 255

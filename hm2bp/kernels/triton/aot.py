"""Ahead-of-time compile check of the triton kernel set: every kernel variant a set of recorded launches holds,
compiled for real NVIDIA GPUs (sm_80, sm_89, sm_90) to cubin on a machine without a GPU.

This module holds what belongs to the kernel set: recording launches, specialising them, compiling, reading the
ptxas figures, the result cache, finding the package's `@triton.jit` kernels and formatting the report. What is
recorded (training steps of networks built from the presets) is the caller's: `tests/hm2bp/triton_cases.py`
builds the networks and runs the steps, and is the command line of the check:

    python -m tests.hm2bp.triton_cases [--report] [--json PATH] [--targets 80,89,90] [--jobs N] [--no-cache]

Triton compiles one variant of a kernel per *specialisation* of its arguments: an int argument equal to 1 becomes a
compile-time constant, ints and pointers divisible by 16 are compiled with that divisibility, and the `tl.constexpr`
arguments (tile sizes, switches) are part of the code. Triton's interpreter, which runs the kernels on CPU in the
tests, specialises nothing, so only a compile shows whether every variant a real run launches builds. Three steps
(`run_check`):

1. **Record.** The caller's `record(case)` runs something through the triton kernel set on shape-only tensors
   (torch's `meta` device) inside `recorder()`: `hm2bp.kernels.triton.launch.launch` shows each launch to the
   recorder and runs nothing. An argument is kept as what Triton specialises on (`describe`): a tensor as its dtype
   and its address modulo 16 on a GPU (the caching allocator aligns every allocation to 512 bytes, so that is
   `storage_offset * element_size` modulo 16), ints, floats and bools as they are.
2. **Specialise.** For each target, each recorded launch goes through Triton's own launch path
   (`JITFunction.warmup`: the binder made by `create_function_from_signature`, the compile-cache key) under a driver
   that names the target and launches nothing (`TargetDriver`); a hook on Triton's compile step receives the
   specialisation and the key. Launches with the same key are one variant.
3. **Compile** each variant for each target to cubin (Triton's pipeline and its bundled `ptxas -v`, whose log gives
   registers and spills), in worker processes. A result is cached by (triton version, ptxas, kernel source,
   specialisation, target) in `cache_dir()`; a failed compile is never cached.

The check fails when a variant does not compile, when its PTX holds an atomic or a tensor-core instruction (the
kernels promise a fixed summation order and no TF32), or, when the cases are the complete set, when a `@triton.jit`
kernel of this package is launched by none of them (`jit_kernels`: a kernel nobody records would escape the check).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import multiprocessing
import os
import pkgutil
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hm2bp.kernels.triton.launch import recording

#: Compute capabilities compiled for: A100 (sm_80), L4 / RTX 40xx (sm_89), H100 / H200 (sm_90).
TARGETS = (80, 89, 90)
PACKAGE = "hm2bp.kernels.triton"
#: PTX instructions the kernels must not contain: atomics (a fixed summation order) and tensor-core products (TF32).
FORBIDDEN_PTX = re.compile(r"^\s*(?:@!?%p\d+\s+)?(atom|red|mma|wgmma)\.", re.MULTILINE)


# ---------------------------------------------------------------------------------------------------- recording
@dataclass(frozen=True)
class Pointer:
    """A tensor argument as Triton specialises on it: its dtype and its address modulo 16 on a GPU."""

    dtype: str
    misalign: int


@dataclass(frozen=True)
class Launch:
    """One kernel launch as Triton specialises on it: kernel (`module:qualname`), arguments (`Pointer` for a
    tensor, ints, floats and bools as passed) and keyword arguments (constexprs and compile options)."""

    kernel: str
    args: tuple
    options: tuple

    @property
    def name(self) -> str:
        return self.kernel.rsplit(":", 1)[1]


def describe(arg: Any) -> Any:
    """What Triton specialises on of a launch argument (see `Pointer`)."""
    if isinstance(arg, torch.Tensor):
        return Pointer(str(arg.dtype).removeprefix("torch."), arg.storage_offset() * arg.element_size() % 16)
    return arg


@contextlib.contextmanager
def recorder() -> Iterator[list[Launch]]:
    """Collects every kernel launch within the block (run or not) as a `Launch`."""
    launches: list[Launch] = []

    def record(kernel, grid, args, options) -> None:
        fn = kernel.fn
        launches.append(Launch(f"{fn.__module__}:{fn.__qualname__}", tuple(describe(a) for a in args),
                               tuple(sorted(options.items()))))

    with recording(record):
        yield launches


def jit_functions() -> dict[str, Any]:
    """Every `@triton.jit` function of this package (`module:qualname` -> the jit function, compiled or
    interpreted)."""
    import inspect

    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    package = importlib.import_module(PACKAGE)
    found: dict[str, Any] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, JITFunction | InterpretedFunction) and inspect.getmodule(value.fn) is module:
                found[f"{module.__name__}:{value.fn.__qualname__}"] = value
    return found


def jit_kernels() -> dict[str, Any]:
    """The kernels among `jit_functions()`: those that no other jit function of the package calls (the others are
    helpers, compiled into their callers)."""
    import inspect

    found = jit_functions()
    sources = {key: inspect.getsource(fn.fn) for key, fn in found.items()}
    helpers = {key for key, fn in found.items() for other, src in sources.items()
               if other != key and re.search(rf"\b{re.escape(fn.fn.__name__)}\s*\(", src)}
    return {key: fn for key, fn in found.items() if key not in helpers}


# ---------------------------------------------------------------------------------------------- specialisation
class TargetDriver:
    """Stands in for Triton's CUDA driver on a machine without one: it names the target GPU (device number = its
    compute capability, so that every target keeps its own binder and kernel cache), so that
    `JITFunction.warmup` specialises and compiles exactly as a launch on that GPU would; it launches nothing."""

    def __init__(self, arch: int) -> None:
        self.arch = arch

    def get_current_device(self) -> int:
        return self.arch

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget

        return GPUTarget("cuda", self.arch, 32)


class _Address:
    """A tensor as the binder sees it: a dtype and an address (`data_ptr`) with the recorded alignment."""

    def __init__(self, pointer: Pointer) -> None:
        self.dtype = getattr(torch, pointer.dtype)
        self._address = (1 << 20) + pointer.misalign

    def data_ptr(self) -> int:
        return self._address


def _target(arch: int) -> None:
    """Make `arch` the target of every Triton launch path in this process (a process of the check's own: the
    stand-in stays active)."""
    from triton.runtime.driver import driver

    driver.set_active(TargetDriver(arch))


def _kernel(key: str):
    module, qualname = key.split(":")
    fn = importlib.import_module(module)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    if not hasattr(fn, "warmup"):
        raise RuntimeError(f"{key} is not a compiled Triton kernel: run the compile check with TRITON_INTERPRET=0")
    return fn


def _warm(launch: Launch):
    """`kernel.warmup(...)` of a recorded launch, with stand-ins for its tensors."""
    args = [_Address(a) if isinstance(a, Pointer) else a for a in launch.args]
    return _kernel(launch.kernel).warmup(*args, grid=(1,), **dict(launch.options))


def specialise(launch: Launch, arch: int) -> dict[str, Any]:
    """The specialisation Triton makes of `launch` on `arch`, through its own launch path (binder, cache key) up to
    the point where it would compile: {key, signature, constants, attrs}."""
    from triton import knobs

    caught: dict[str, Any] = {}

    def hook(*, key, compile, **_) -> bool:
        caught.update(key=str(key), signature=dict(compile["signature"]),
                      constants={str(k): v for k, v in compile["constants"].items()},
                      attrs={str(k): v for k, v in compile["configs"][0].items() if v})
        return True  # skip the compile

    previous = knobs.runtime.jit_cache_hook
    knobs.runtime.jit_cache_hook = hook
    try:
        _target(arch)
        _warm(launch)
    finally:
        knobs.runtime.jit_cache_hook = previous
    if not caught:
        raise RuntimeError(f"Triton compiled nothing for {launch.name} (no specialisation seen)")
    return caught


# ----------------------------------------------------------------------------------------------------- compiling
def cache_dir() -> Path:
    """Where compile results are cached: `$HM2BP_AOT_CACHE`, else `$XDG_CACHE_HOME/hm2bp/triton-aot` (default
    `~/.cache`)."""
    if os.environ.get("HM2BP_AOT_CACHE"):
        return Path(os.environ["HM2BP_AOT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hm2bp" / "triton-aot"


def _cache_key(launch: Launch, arch: int, spec_key: str) -> str:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    backend = make_backend(GPUTarget("cuda", arch, 32))  # its hash names the ptxas version and the target
    text = json.dumps([triton.__version__, backend.hash(), _kernel(launch.kernel).cache_key, spec_key, arch])
    return hashlib.sha256(text.encode()).hexdigest()


def _ptxas_figures(log: str) -> dict[str, int]:
    """Registers, spill bytes and stack frame from a `ptxas -v` log."""
    regs = re.search(r"Used (\d+) registers", log)
    frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if regs is None or frame is None:
        raise RuntimeError(f"no register count in the ptxas log:\n{log[-2000:]}")
    return {"registers": int(regs[1]), "stack": int(frame[1]), "spill_stores": int(frame[2]),
            "spill_loads": int(frame[3])}


def compile_launch(launch: Launch, arch: int) -> dict[str, Any]:
    """Compile `launch` for `arch` to cubin through `JITFunction.warmup`: registers, spills (bytes), shared memory,
    compile seconds, and any PTX instruction of `FORBIDDEN_PTX`; {"error": message} when the compile fails."""
    from triton import knobs

    knobs.compilation.always_compile = True  # a cache hit would run no ptxas, hence no log
    knobs.nvidia.dump_ptxas_log = True
    log = io.StringIO()
    t0 = time.perf_counter()
    _target(arch)
    try:
        with contextlib.redirect_stdout(log):
            compiled = _warm(launch)
    except Exception as exc:  # a compile error of any stage: reported, never cached
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return {"error": f"{type(exc).__name__}: " + "\n".join(lines[:40])}
    result = _ptxas_figures(log.getvalue())
    result["shared"] = int(compiled.metadata.shared)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    result["forbidden"] = sorted({m[1] for m in FORBIDDEN_PTX.finditer(compiled.asm["ptx"])})
    return result


def _worker_init(triton_cache: str) -> None:
    os.environ["TRITON_CACHE_DIR"] = triton_cache


def _compile_job(job: tuple[Launch, int]) -> dict[str, Any]:
    return compile_launch(*job)


# ----------------------------------------------------------------------------------------------------- the check
@dataclass
class Variant:
    """One compiled variant of a kernel: a representative launch, the cases that launch it, Triton's compile-cache
    key and the compile result per target."""

    kernel: str
    specialisation: str
    launch: Launch
    cases: list[str]
    keys: dict[int, str] = field(default_factory=dict)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.launch.name


@dataclass
class Report:
    triton: str
    targets: tuple[int, ...]
    cases: int
    launches: int
    kernels: list[str]
    unlaunched: list[str]
    variants: list[Variant]
    seconds: dict[str, float]
    compiled: int = 0  # compiles run (the others came from the cache)

    def failures(self) -> list[str]:
        """One line per problem: a kernel no step launches, a failed compile, a forbidden PTX instruction."""
        out = [f"{k}: a @triton.jit kernel that no recorded case launches (add a case that launches it)"
               for k in self.unlaunched]
        for v in self.variants:
            for arch, r in sorted(v.results.items()):
                if "error" in r:
                    out.append(f"{v.name} [{v.specialisation}] sm_{arch} ({v.cases[0]}): {r['error']}")
                elif r["forbidden"]:
                    out.append(f"{v.name} [{v.specialisation}] sm_{arch}: PTX holds {', '.join(r['forbidden'])}")
        return out


def describe_specialisation(spec: dict[str, Any], unspecialised: Iterable[str] = ()) -> str:
    """`name=value` for every constant (constexprs and ints equal to 1), the ints and pointers not known to be
    divisible by 16 (leaving out the `unspecialised` ones, declared `do_not_specialize`), and the pointers' element
    types."""
    names = list(spec["signature"])
    skip = set(unspecialised)

    def index(path: str) -> int:
        return int(path.strip("(), ").split(",")[0])

    consts = [f"{names[index(k)]}={v}" for k, v in spec["constants"].items()]
    div16 = {names[index(k)] for k in spec["attrs"]}
    plain = [n for n, t in spec["signature"].items()
             if t != "constexpr" and n not in div16 and n not in skip and not t.startswith(("fp", "bf", "u1"))]
    pointers = ",".join(t[1:] for t in spec["signature"].values() if t.startswith("*"))
    return " ".join(consts) + (f"; not /16: {' '.join(plain)}" if plain else "") + f"; *{pointers}"


def _variants(seen: dict[Launch, list[str]], targets: tuple[int, ...]) -> list[Variant]:
    by_key: dict[tuple, Variant] = {}
    for launch, names in seen.items():
        specs = {arch: specialise(launch, arch) for arch in targets}
        key = (launch.kernel, *(specs[a]["key"] for a in targets))
        variant = by_key.get(key)
        if variant is None:
            unspecialised = [p.name for p in _kernel(launch.kernel).params if p.do_not_specialize]
            variant = by_key[key] = Variant(launch.kernel, describe_specialisation(specs[targets[0]], unspecialised),
                                            launch, [], {a: specs[a]["key"] for a in targets})
        variant.cases += [n for n in names if n not in variant.cases]
    return sorted(by_key.values(), key=lambda v: (v.name, v.specialisation))


def _compile_all(variants: list[Variant], targets: tuple[int, ...], pool, use_cache: bool) -> int:
    """Fill every variant's results, from the cache where allowed; returns the number of compiles run."""
    todo: list[tuple[Variant, int, str]] = []
    store = cache_dir()
    for v in variants:
        for arch in targets:
            key = _cache_key(v.launch, arch, v.keys[arch])
            path = store / f"{key}.json"
            if use_cache and path.is_file():
                v.results[arch] = {**json.loads(path.read_text()), "cached": True}
            else:
                todo.append((v, arch, key))
    todo.sort(key=lambda item: item[0].name)
    for (v, arch, key), result in zip(todo, pool.map(_compile_job, [(v.launch, arch) for v, arch, _ in todo]),
                                      strict=True):
        v.results[arch] = result
        if use_cache and "error" not in result:
            store.mkdir(parents=True, exist_ok=True)
            (store / f"{key}.json").write_text(json.dumps(result))
    return len(todo)


class _InProcess:
    """The pool interface, in this process (one job)."""

    def map(self, fn, items, chunksize: int = 1):
        return map(fn, items)


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator[Any]:
    """Worker processes (spawned: they import the kernels afresh, compiled, like this process) with a private
    Triton cache, or this process for one job."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hm2bp-aot-") as triton_cache:
        if jobs <= 1:
            _worker_init(triton_cache)
            yield _InProcess()
            return
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                 initargs=(triton_cache,)) as pool:
            yield pool


def run_check(cases: Sequence[Any], record: Callable[[Any], list[Launch]], targets: tuple[int, ...] = TARGETS,
              jobs: int = 2, use_cache: bool = True, complete: bool = True) -> Report:
    """Record, specialise and compile (module docstring). `cases`: anything with a `name`; `record(case)`: the
    launches of a case, recorded with `recorder()` (a module-level function: worker processes run it); `complete`:
    the cases are the whole set, so every kernel of the package must be launched by one of them."""
    import triton

    times = {}
    with _pool(jobs) as pool:
        t0 = time.perf_counter()
        seen: dict[Launch, list[str]] = {}
        for case, launches in zip(cases, pool.map(record, cases), strict=True):
            for launch in launches:
                names = seen.setdefault(launch, [])
                if case.name not in names:
                    names.append(case.name)
        times["record"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        variants = _variants(seen, targets)
        times["specialise"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        compiled = _compile_all(variants, targets, pool, use_cache)
        times["compile"] = time.perf_counter() - t0
    kernels = sorted(jit_kernels())
    launched = {launch.kernel for launch in seen}
    return Report(triton.__version__, tuple(targets), len(cases), len(seen), kernels,
                  [k for k in kernels if k not in launched] if complete else [], variants,
                  {k: round(v, 1) for k, v in times.items()}, compiled)


# ------------------------------------------------------------------------------------------------------ reporting
def _cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "-"
    if "error" in result:
        return "FAILED"
    spill = result["spill_stores"] + result["spill_loads"]
    return f"{result['registers']}" + (f" +{spill}B spill" if spill else "")


def format_variants(report: Report) -> str:
    """One line per variant: kernel, specialisation, registers (and spill bytes) per target, first case."""
    head = ["kernel", "specialisation", *(f"sm_{a}" for a in report.targets), "launched by (first of n)"]
    rows = [[v.name, v.specialisation, *(_cell(v.results.get(a)) for a in report.targets),
             f"{v.cases[0]} (of {len(v.cases)})"] for v in report.variants]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def format_summary(report: Report) -> str:
    """One line per kernel: variants, registers (min-max) and the largest spill (bytes stored + loaded) per
    target, failures."""
    lines = [f"{'kernel':24s} {'variants':>8s}  " + "  ".join(f"{'sm_' + str(a) + ' regs (spill)':>22s}"
                                                          for a in report.targets) + "  failed"]
    for kernel in report.kernels:
        mine = [v for v in report.variants if v.kernel == kernel]
        cells, failed = [], 0
        for arch in report.targets:
            ok = [v.results[arch] for v in mine if arch in v.results and "error" not in v.results[arch]]
            failed += sum(1 for v in mine if "error" in v.results.get(arch, {}))
            regs = [r["registers"] for r in ok]
            spill = max((r["spill_stores"] + r["spill_loads"] for r in ok), default=0)
            cells.append(f"{min(regs)}-{max(regs)} ({spill} B)" if regs else "-")
        lines.append(f"{kernel.rsplit(':', 1)[1]:24s} {len(mine):8d}  " + "  ".join(f"{c:>22s}" for c in cells)
                     + f"  {failed}")
    return "\n".join(lines)


def format_footer(report: Report) -> str:
    """The closing line: variants, kernels, launches, cases, targets, compiles run and cached, seconds per step."""
    targets = report.targets
    return (f"triton {report.triton}: {len(report.variants)} variants of {len(report.kernels)} kernels from "
            f"{report.launches} distinct launches of {report.cases} cases, for "
            f"{', '.join(f'sm_{a}' for a in targets)}: {report.compiled} compiled, "
            f"{len(report.variants) * len(targets) - report.compiled} from the cache ({cache_dir()}); "
            f"seconds: {report.seconds}")


def default_jobs() -> int:
    """Compile processes: the CPUs of this process, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

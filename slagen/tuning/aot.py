"""Compile rendered kernels for a GPU that is not here (ahead of time), to catch what the interpreter lets by.

The Triton interpreter runs kernels with numpy: it does not check what the GPU compiler checks (dot
shapes and dtypes, layouts, shared memory, register pressure). This module runs an op's host launcher
with every `@triton.jit` kernel replaced by a recorder, so the launcher computes its grids, buffers and
constexprs exactly as on a GPU but launches nothing; each recorded launch is then compiled with
`triton.compile(..., target=GPUTarget("cuda", arch, 32))` down to a cubin (LLVM and ptxas ship with
triton, no driver is needed) and its shared memory is compared with the target's per-block limit.

The modules are imported afresh with the interpreter switched off (an interpreted kernel cannot be
compiled), under a module name of their own, so the interpreter's copies that tests use are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import torch

# Largest dynamic shared memory one block may ask for (bytes), per compute capability (CUDA's
# cudaDevAttrMaxSharedMemoryPerBlockOptin): what triton checks at launch before raising OutOfResources.
SHARED_LIMITS = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}

_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
          torch.int32: "i32", torch.int64: "i64", torch.int16: "i16", torch.int8: "i8", torch.uint8: "u8",
          torch.bool: "i1"}
_LOCK = threading.RLock()


@dataclass(frozen=True)
class Launch:
    """One recorded `kernel[grid](*args, **kwargs)` of a host launcher."""

    kernel: Any  # the JITFunction
    args: dict[str, Any]  # every parameter by name (defaults filled in)
    options: dict[str, Any]  # launch options: num_warps, num_stages, ...
    grid: Any = None  # as launched: a tuple, or a callable of the meta-parameters

    @property
    def name(self) -> str:
        return self.kernel.__name__


@dataclass
class Compiled:
    """What compiling one launch for the target gave."""

    kernel: str
    ok: bool
    shared: int = 0  # bytes of shared memory per block
    shared_limit: int = 0
    error: str = ""
    registers: int = 0  # per thread, from ptxas
    spill_bytes: int = 0  # local-memory spill stores per thread, from ptxas (0: the state stays in registers)
    sass: Optional[dict] = None  # `sass.SassMix` as a dict (None: not disassembled)

    @property
    def fits(self) -> bool:
        return self.ok and (self.shared_limit == 0 or self.shared <= self.shared_limit)


class _Recorder:
    """Stands in for a JITFunction in a module's globals: `rec[grid](...)` records and launches nothing."""

    def __init__(self, kernel: Any, sink: list[Launch]) -> None:
        self.kernel, self.sink = kernel, sink
        self.params = inspect.signature(kernel.fn).parameters

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            names = list(self.params)
            bound = dict(zip(names, args))
            options = {k: kwargs.pop(k) for k in list(kwargs) if k not in self.params}
            bound.update(kwargs)
            for name, param in self.params.items():
                if name not in bound:
                    if param.default is inspect.Parameter.empty:
                        raise TypeError(f"{self.kernel.__name__}: launch is missing argument {name!r}")
                    bound[name] = param.default
            self.sink.append(Launch(self.kernel, bound, options, grid))

        return record


@contextlib.contextmanager
def compiler_mode():
    """Triton's GPU path for the duration (TRITON_INTERPRET off for decoration and for compiling: under the
    interpreter's setting the code generator misreads kernels). One at a time: the switch is process-wide."""
    import triton

    with _LOCK:
        knobs = triton.knobs.runtime
        was, env_was = knobs.interpret, os.environ.pop("TRITON_INTERPRET", None)
        knobs.interpret = False
        try:
            yield
        finally:
            knobs.interpret = was
            if env_was is not None:
                os.environ["TRITON_INTERPRET"] = env_was


def import_compilable(source: str) -> Any:
    """Import rendered source with the interpreter off, so its kernels are JITFunctions (memoised)."""
    from ..codegen.standalone import KERNEL_IMPORT, PACKAGE_KERNEL_IMPORT
    from ..runtime.loader import import_file, source_digest, source_file

    # a package's kernel file imports its own runtime copy relatively; here it is a top-level module, so it
    # takes slagen's runtime (the same code: the copy is byte-identical, and the line count stays)
    source = source.replace(PACKAGE_KERNEL_IMPORT, KERNEL_IMPORT)
    name = f"_slagen_aot_{source_digest(source)}"
    if name in sys.modules:
        return sys.modules[name]
    with compiler_mode():
        return import_file(source_file(source), name)


def record_launches(module: Any, call: Callable[[Any], Any]) -> list[Launch]:
    """Run `call(module)` with the module's kernels recording instead of launching. TRITON_INTERPRET is unset
    meanwhile: the launcher then picks its constexprs as on a GPU (bf16 dots take "bf16", not the interpreter's
    "bf16_fp32" stand-in), so what is compiled is what a GPU would run, in a test process too."""
    from triton.runtime.jit import JITFunction

    sink: list[Launch] = []
    kernels = {n: v for n, v in vars(module).items() if isinstance(v, JITFunction)}
    with _LOCK:
        env_was = os.environ.pop("TRITON_INTERPRET", None)
        for name, kernel in kernels.items():
            setattr(module, name, _Recorder(kernel, sink))
        try:
            call(module)
        finally:
            for name, kernel in kernels.items():
                setattr(module, name, kernel)
            if env_was is not None:
                os.environ["TRITON_INTERPRET"] = env_was
    return sink


def _signature(launch: Launch) -> tuple[dict[str, str], dict[str, Any]]:
    import triton.language as tl

    params = inspect.signature(launch.kernel.fn).parameters
    signature, constexprs = {}, {}
    for name, value in launch.args.items():
        annotation = params[name].annotation
        is_constexpr = annotation is tl.constexpr or (isinstance(annotation, str) and "constexpr" in annotation)
        if is_constexpr or value is None:
            signature[name], constexprs[name] = "constexpr", value
        elif isinstance(value, torch.Tensor):
            signature[name] = "*" + _TYPES[value.dtype]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{launch.name}: argument {name!r} of type {type(value).__name__} has no triton type")
    return signature, constexprs


def jit_specialization(launch: Launch, arch: int) -> tuple[dict[str, str], dict[str, Any], list]:
    """(signature, constexprs by name, attributes as [[parameter index, [[name, value], ...]], ...]) as the JIT
    specialises this launch for sm_<arch>: integers equal to 1 become constants, pointers and integers
    divisible by 16 carry `tt.divisibility` (which lets the compiler vectorise loads). Triton's own binder;
    `_signature` (no attributes) where this triton's internals differ."""
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import make_backend
        from triton.runtime.jit import create_function_from_signature

        kernel = launch.kernel
        backend = make_backend(GPUTarget("cuda", arch, 32))
        binder = create_function_from_signature(kernel.signature, kernel.params, backend)
        bound, specialization, options = binder(**launch.args, **launch.options)
        _, signature, constexprs, attrs = kernel._pack_args(backend, dict(launch.options), bound, specialization,
                                                            options)
    except (ImportError, AttributeError, TypeError):
        signature, constexprs = _signature(launch)
        return signature, constexprs, []
    names = kernel.arg_names
    return (dict(signature), {names[path[0]]: value for path, value in constexprs.items()},
            [[path[0], [list(a) for a in value]] for path, value in sorted(attrs.items())])


@dataclass(frozen=True)
class Job:
    """One kernel to compile, as plain data (it crosses to a worker process as a JSON line)."""

    source: str  # the rendered module
    kernel: str
    signature: dict[str, str]
    constexprs: dict[str, Any]
    options: dict[str, Any]
    attrs: list = dataclasses.field(default_factory=list)  # `jit_specialization`'s attributes

    def key(self) -> str:
        return json.dumps([hashlib.sha256(self.source.encode()).hexdigest(), self.kernel, self.signature,
                           self.constexprs, self.options, self.attrs], sort_keys=True)


def jobs_for(source: str, call: Callable[[Any], Any]) -> list[Job]:
    """The distinct kernel launches `call(module)` makes on the module `source` renders to."""
    module = import_compilable(source)
    jobs: dict[str, Job] = {}
    for launch in record_launches(module, call):
        signature, constexprs, attrs = jit_specialization(launch, 90)  # the attributes are the same for any arch
        job = Job(source, launch.name, signature, constexprs, dict(launch.options), attrs)
        jobs.setdefault(job.key(), job)
    return list(jobs.values())


def compile_job(job: Job, arch: int) -> Compiled:
    """Compile one kernel for `sm_<arch>` down to a cubin, in this process (which must not have imported
    triton under TRITON_INTERPRET: the interpreter swaps triton's own library functions for Python ones)."""
    from triton.compiler import ASTSource

    limit = SHARED_LIMITS.get(arch, 0)
    try:
        kernel = getattr(import_compilable(job.source), job.kernel)
        source = ASTSource(fn=kernel, signature=job.signature, constexprs=job.constexprs, attrs=ast_attrs(job.attrs))
        compiled, (registers, spills) = compile_with_usage(source, arch, job.options)
    except Exception as err:  # noqa: BLE001 - any compiler failure is a finding to report
        text = " ".join(str(err).split())
        return Compiled(job.kernel, False, error=text[:2000], shared_limit=limit)
    from .sass import instruction_mix

    mix = instruction_mix(compiled.asm["cubin"])
    return Compiled(job.kernel, True, shared=int(compiled.metadata.shared), shared_limit=limit,
                    registers=registers, spill_bytes=spills, sass=None if mix is None else dataclasses.asdict(mix))


def ast_attrs(attrs: list) -> dict:
    """`jit_specialization`'s attributes as `ASTSource` takes them (keyed by parameter path)."""
    return {(index,): [list(a) for a in values] for index, values in attrs}


def _ptxas_path(arch: int) -> str:
    """The ptxas triton itself uses for `arch` (triton >= 3.7 picks a newer one for sm_90+)."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path
    except ImportError:
        import triton

        return triton.knobs.nvidia.ptxas.path


_USED = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes spill stores")


def compile_with_usage(source: Any, arch: int, options: Mapping[str, Any]) -> tuple[Any, tuple[int, int]]:
    """`triton.compile` for `sm_<arch>`, with (registers per thread, spill-store bytes) from the `ptxas -v` log
    of the compile that built the cubin: triton's own ptxas flags count (3.9 adds `--regAllocOptLevel=2`,
    which moves gdn's delta_chunk_prepare from 80 registers and 4 B spilled to 99 and none). Compiled afresh
    (a cache hit runs no ptxas); ptxas_usage's own run where triton printed no log or has no knobs (< 3.4)."""
    import io

    import triton
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", arch, 32)
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4
    if knobs is None:
        with compiler_mode():
            compiled = triton.compile(source, target=target, options=dict(options))
        return compiled, ptxas_usage(compiled.asm["ptx"], arch)
    was = knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile
    log = io.StringIO()
    with compiler_mode():
        knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = True, True
        try:
            with contextlib.redirect_stdout(log):  # triton prints the log; a worker's stdout is its reply pipe
                compiled = triton.compile(source, target=target, options=dict(options))
        finally:
            knobs.nvidia.dump_ptxas_log, knobs.compilation.always_compile = was
    used, spill = _USED.search(log.getvalue()), _SPILL.search(log.getvalue())
    if used is None:
        return compiled, ptxas_usage(compiled.asm["ptx"], arch)
    return compiled, (int(used.group(1)), int(spill.group(1)) if spill else 0)


def ptxas_usage(ptx: str, arch: int) -> tuple[int, int]:
    """(registers per thread, spill-store bytes) of the PTX's kernel, from triton's own ptxas `-v` (triton
    runs the same but keeps the report only in a debug knob, and not at all on a cache hit)."""
    try:
        from triton.backends.nvidia.compiler import sm_arch_from_capability

        gpu_name = sm_arch_from_capability(arch)
    except ImportError:
        gpu_name = f"sm_{arch}{'a' if arch >= 90 else ''}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        done = subprocess.run([_ptxas_path(arch), "-v", f"--gpu-name={gpu_name}", str(src),
                               "-o", str(Path(tmp) / "k.o")], capture_output=True, text=True)
    report = done.stderr + done.stdout
    if done.returncode != 0:
        return -1, -1  # unknown: the cubin itself was built by triton, only this report failed
    used, spill = _USED.search(report), _SPILL.search(report)
    return (int(used.group(1)) if used else 0), (int(spill.group(1)) if spill else 0)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def compile_jobs(jobs: list[Job], arch: int, workers: Optional[int] = None,
                 done: Optional[Callable[[int, Compiled], None]] = None) -> list[Compiled]:
    """Compile `jobs` in worker processes started without TRITON_INTERPRET (`python -m slagen.tuning.aot`,
    one JSON line per job each way); `done(index, result)` is called as each finishes."""
    results: list[Optional[Compiled]] = [None] * len(jobs)
    if not jobs:
        return []
    pending: queue.Queue[int] = queue.Queue()
    for index in range(len(jobs)):
        pending.put(index)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton's own default, said out loud (no warning)
    lock = threading.Lock()

    def serve() -> None:
        proc = subprocess.Popen([sys.executable, "-m", "slagen.tuning.aot", str(arch)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            while True:
                try:
                    index = pending.get_nowait()
                except queue.Empty:
                    return
                job = jobs[index]
                proc.stdin.write(json.dumps(dataclasses.asdict(job)) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if line:
                    result = Compiled(**json.loads(line))
                else:  # the worker died (a compiler crash): report it, start a fresh one for the rest
                    result = Compiled(job.kernel, False, error=f"compiler process exited ({proc.wait()})",
                                      shared_limit=SHARED_LIMITS.get(arch, 0))
                    proc = subprocess.Popen(proc.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, text=True, env=env)
                with lock:
                    results[index] = result
                    if done is not None:
                        done(index, result)
        finally:
            proc.stdin.close()
            proc.wait()

    threads = [threading.Thread(target=serve, daemon=True)
               for _ in range(min(workers or default_workers(), len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def compile_module(source: str, call: Callable[[Any], Any], arch: int) -> list[Compiled]:
    """Every distinct launch `call(module)` makes, compiled for `sm_<arch>`."""
    return compile_jobs(jobs_for(source, call), arch)


def _worker(arch: int) -> None:
    """`python -m slagen.tuning.aot ARCH`: compile Job JSON lines from stdin, one Compiled JSON line each."""
    for line in sys.stdin:
        job = Job(**json.loads(line))
        result = compile_job(job, arch)
        sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")
        sys.stdout.flush()


def op_calls(spec: Any, op: str, inputs: Mapping[str, Any], scale: float,
             states_chunk: Optional[int] = None) -> Callable[[Any], Any]:
    """A `call(module)` running a rendered module's launcher for `op` on `inputs` (a forward with the final
    state; a backward with an incoming gradient for o and for the final state)."""
    inputs = dict(inputs)
    q, k, v = inputs.pop("q"), inputs.pop("k"), inputs.pop("v")

    epilogue = spec.output_norm == "rms" or spec.uses_read_gate

    def call(module: Any) -> Any:
        if op == "backward":
            do = torch.randn_like(v)
            final = module_state_like(spec, inputs, q, v)
            # a backward that reads the forward's o_raw (the delta family's epilogue_input "saved") gets one
            raw = {"o_raw": torch.randn_like(v)} if getattr(module, "SAVES_OUTPUT", False) else {}
            return module.backward(q, k, v, **inputs, scale=scale, do=do, dht=final, **raw)
        fn = getattr(module, op)
        extra = {} if states_chunk is None else {"save_states_chunk": states_chunk}
        if epilogue and "save_raw_output" in inspect.signature(fn).parameters:
            # the training forward too: it also stores o before the epilogue (another specialisation)
            fn(q, k, v, **inputs, scale=scale, output_final_state=True, save_raw_output=True, **extra)
        return fn(q, k, v, **inputs, scale=scale, output_final_state=True, **extra)

    return call


def module_state_like(spec: Any, inputs: Mapping[str, Any], q: torch.Tensor, v: torch.Tensor) -> Any:
    """A random fp32 state with the spec's structure, for a backward's incoming final-state gradient."""
    from ..runtime.library import state_shapes

    cu = inputs.get("cu_seqlens")
    N = q.shape[0] if cu is None else cu.numel() - 1
    parts = [torch.randn(s, dtype=torch.float32) for s in state_shapes(spec)(N, v.shape[2], q.shape[3], v.shape[3])]
    return parts[0] if len(parts) == 1 else tuple(parts)


@dataclass(frozen=True)
class KernelSource:
    """One rendered module to compile: which variant and op it serves, under which config key."""

    variant: str
    spec: Any  # VariantSpec
    op: str  # forward | recurrent | backward
    key: str  # config key (package) or "default"
    source: str


@dataclass(frozen=True)
class AotResult:
    variant: str
    op: str
    key: str
    case: str  # "fixed" (B sequences of length T, initial state), "varlen" (cu_seqlens) or "grouped"
    kernel: str
    ok: bool
    shared: int
    shared_limit: int
    error: str = ""
    registers: int = 0
    spill_bytes: int = 0
    sass: Optional[dict] = None  # `sass.SassMix` as a dict

    @property
    def fits(self) -> bool:
        return self.ok and (self.shared_limit == 0 or self.shared <= self.shared_limit)


CASES = ("fixed", "varlen")  # the default; "grouped" (fixed, 2 value heads per q/k head) on request
ALL_CASES = CASES + ("grouped",)


def case_inputs(spec: Any, case: str, dtype: torch.dtype, heads: int = 4) -> dict[str, Any]:
    """Small CPU inputs that take the launcher down the path `case` names (recording needs no GPU)."""
    from ..reference.inputs import make_inputs

    if case == "fixed":
        return make_inputs(spec, 2, 100, heads, dtype=dtype, with_initial_state=spec.initial_state)
    if case == "varlen":
        return make_inputs(spec, 1, None, heads, dtype=dtype, seqlens=[37, 64, 9],
                           with_initial_state=spec.initial_state)
    if case == "grouped":  # grouped value heads: the G > 1 specialisations (and ZeroS's group-sum kernel)
        return make_inputs(spec, 2, 100, heads // 2, dtype=dtype, value_heads=heads,
                           with_initial_state=spec.initial_state)
    raise ValueError(f"case: expected one of {ALL_CASES}, got {case!r}")


def check_sources(sources: list[KernelSource], arch: int, dtype: torch.dtype = torch.bfloat16,
                  cases: tuple[str, ...] = CASES, progress: Callable[[AotResult], None] | None = None,
                  workers: Optional[int] = None) -> list[AotResult]:
    """Compile every kernel each source launches, for each case, for `sm_<arch>` (in parallel)."""
    labels, jobs, results = [], [], []
    for item in sources:
        for case in cases:
            if case == "varlen" and not item.spec.varlen:
                continue
            inputs = case_inputs(item.spec, case, dtype)
            scale = float(item.spec.head_dim_k) ** -0.5
            try:
                found = jobs_for(item.source, op_calls(item.spec, item.op, inputs, scale))
            except Exception as err:  # noqa: BLE001 - a launcher that fails on the host is a finding too
                results.append(AotResult(item.variant, item.op, item.key, case, "<launcher>", False, 0,
                                         SHARED_LIMITS.get(arch, 0), " ".join(str(err).split())[:2000]))
                continue
            labels.extend((item, case) for _ in found)
            jobs.extend(found)

    def done(index: int, c: Compiled) -> None:
        item, case = labels[index]
        result = AotResult(item.variant, item.op, item.key, case, c.kernel, c.ok, c.shared, c.shared_limit, c.error,
                           c.registers, c.spill_bytes, c.sass)
        results.append(result)
        if progress is not None:
            progress(result)

    compile_jobs(jobs, arch, workers, done)
    return results



class _Warmer:
    """Stands in for a JITFunction: `w[grid](...)` compiles for this GPU (`JITFunction.warmup`, the JIT's own
    specialisation and caches) and launches nothing."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def __getitem__(self, grid: Any) -> Callable[..., None]:
        def warm(*args: Any, **kwargs: Any) -> None:
            self.kernel.warmup(*args, grid=grid, **kwargs)

        return warm


def warm_up(modules: Iterable[Any], call: Callable[[], Any]) -> None:
    """Run `call()` with the kernels of `modules` compiling instead of launching: on a GPU this fills the
    JIT's caches for exactly the launches `call` makes, and no kernel runs (the host glue between launches
    does, on whatever the unlaunched kernels left in their outputs)."""
    from triton.runtime.jit import JITFunction

    swapped = [(m, n, v) for m in modules for n, v in list(vars(m).items()) if isinstance(v, JITFunction)]
    with _LOCK:
        for module, name, kernel in swapped:
            setattr(module, name, _Warmer(kernel))
        try:
            call()
        finally:
            for module, name, kernel in swapped:
                setattr(module, name, kernel)


if __name__ == "__main__":
    _worker(int(sys.argv[1]))

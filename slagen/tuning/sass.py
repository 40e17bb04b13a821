"""The SASS instruction mix of a compiled kernel: which tensor-core instructions it issues and on what operand
types, how much scalar fp32 work, and whether it touches local memory (register spills).

`slagen aot --report` calls this on each cubin it builds for a GPU that is not here. The disassembler is the
`cuobjdump` that ships with triton (`triton.knobs.nvidia.cuobjdump`); the counts are static (instructions in
the code, not executions: a loop body counts once).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# `/*0660*/   @!P0 HGMMA.64x64x16.F32.BF16 R24, gdesc[UR4].tnspB, RZ, !UPT ;   /* 0x40e0... */`
_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*)")
# tensor-core opcodes: HMMA/HGMMA (fp16, bf16, tf32), IMMA/IGMMA (int), QGMMA (fp8), DMMA (fp64), BMMA (bits)
_MMA = re.compile(r"^(?:H|I|Q|D|B)G?MMA\.")


@dataclass
class SassMix:
    """Static instruction counts of one kernel's SASS."""

    instructions: int = 0
    mma: dict[str, int] = field(default_factory=dict)  # full opcode, e.g. HGMMA.64x128x16.F32.BF16 -> count
    ffma: int = 0  # scalar fp32 fused multiply-adds (any FFMA.* modifier)
    ldl: int = 0  # local-memory loads (spill reloads, or arrays indexed at run time)
    stl: int = 0  # local-memory stores

    @property
    def mma_types(self) -> list[str]:
        """Operand types of the tensor-core instructions (the opcode's last part: BF16, F16, TF32, E4M3, S8...)."""
        return sorted({opcode.rsplit(".", 1)[-1] for opcode in self.mma})

    def summary(self) -> str:
        mma = ", ".join(f"{op} x{n}" for op, n in sorted(self.mma.items())) or "no MMA"
        return f"{mma}; FFMA {self.ffma}, LDL {self.ldl}, STL {self.stl} ({self.instructions} instructions)"


def count(sass: str) -> SassMix:
    """Count the instructions of `cuobjdump -sass` (or `nvdisasm`) text."""
    opcodes: Counter[str] = Counter()
    for line in sass.splitlines():
        found = _INSTRUCTION.match(line)
        if found:
            opcodes[found.group(1)] += 1
    base = Counter()
    for opcode, n in opcodes.items():
        base[opcode.split(".", 1)[0]] += n
    return SassMix(instructions=sum(opcodes.values()),
                   mma={op: n for op, n in sorted(opcodes.items()) if _MMA.match(op)},
                   ffma=base["FFMA"], ldl=base["LDL"], stl=base["STL"])


def cuobjdump_path() -> str:
    import triton

    return triton.knobs.nvidia.cuobjdump.path


def disassemble(cubin: bytes) -> str:
    """SASS text of a cubin, from triton's own cuobjdump."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        done = subprocess.run([cuobjdump_path(), "-sass", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cuobjdump -sass failed ({done.returncode}): {' '.join(done.stderr.split())[:300]}")
    return done.stdout


def instruction_mix(cubin: bytes) -> Optional[SassMix]:
    """The cubin's instruction mix, or None when it cannot be disassembled (the compile itself still counts)."""
    try:
        return count(disassemble(cubin))
    except (OSError, RuntimeError):
        return None

#!/usr/bin/env python3
"""Turns a CUDA source into C++ for the CPU emulator (tests/emu): every launch
`kernel<<<grid, block[, smem[, stream]]>>>(args)` becomes `emu_launch(grid, block, smem, stream, kernel)(args)`
and every `extern __shared__ T name[];` a pointer to the launch's dynamic shared memory. Nothing else changes,
so the emulated kernels are the project's kernels, line for line.

    cu_to_cpp.py IN.cu|IN.cuh OUT"""
import re
import sys


def split_top_level(s):
    """Splits s at the commas outside parentheses, brackets, braces and angle brackets of casts."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def convert(src):
    def launch(m):
        kernel, config = m.group(1), split_top_level(m.group(2))
        if not 2 <= len(config) <= 4:
            raise SystemExit(f"cu_to_cpp: cannot read the launch configuration <<<{m.group(2)}>>>")
        config += ["0", "nullptr"][len(config) - 2:]
        return f"emu_launch({', '.join(config)}, {kernel})("

    out = re.sub(r"([A-Za-z_]\w*(?:<[\w:, ]*>)?)\s*<<<(.*?)>>>\s*\(", launch, src, flags=re.S)
    out = re.sub(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?([\w:]+)\s+(\w+)\s*\[\s*\]\s*;",
                 r"\1* \2 = static_cast<\1*>(emu_dynamic_smem);", out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    text = open(sys.argv[1]).read()
    open(sys.argv[2], "w").write(f'#line 1 "{sys.argv[1]}"\n' + convert(text))

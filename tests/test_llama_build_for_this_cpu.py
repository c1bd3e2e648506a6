"""llama.cpp is built for the CPU it runs on: AVX-512 where a compiled probe runs it here, portable AVX2 otherwise.

`make install` asks `scripts/llama_cpu.sh` which kind to build; a wheel of the other kind must never be installed
(an AVX-512 build faults on a CPU without it, a portable one reads prompts ~1.3 times slower than it could)."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "llama_cpu.sh"


def probe(**env) -> str:
    return subprocess.run(
        [str(SCRIPT)], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_the_probe_names_one_of_the_two_builds():
    assert probe(PMLM_LLAMA_CPU="") in {"avx512", "portable"}


def test_a_chosen_build_skips_the_probe():
    assert probe(PMLM_LLAMA_CPU="portable") == "portable"


def test_the_installed_llama_cpp_is_the_build_the_probe_chose_for_this_cpu():
    import llama_cpp

    features = llama_cpp.llama_print_system_info().decode()
    assert "AVX2 = 1" in features
    assert ("AVX512 = 1" in features) == (probe(PMLM_LLAMA_CPU="") == "avx512"), features

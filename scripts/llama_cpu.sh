#!/usr/bin/env bash
# Which llama.cpp CPU build this machine can run, printed as one word for the Makefile:
#   avx512    the CPU executes AVX-512 with VNNI and BF16 (a compiled probe ran here without a fault)
#   portable  AVX2 only, which every x86-64 machine of the last decade runs
# Some virtual machines advertise AVX-512 in /proc/cpuinfo but fault on it, so the flags are not trusted:
# a small program using each instruction family ggml's AVX-512 build uses must run. PMLM_LLAMA_CPU=portable
# (or avx512) skips the probe, e.g. to build an environment for another machine.
set -u
if [[ -n "${PMLM_LLAMA_CPU:-}" ]]; then
  echo "$PMLM_LLAMA_CPU"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/probe.c" <<'C'
#include <immintrin.h>
#include <stdio.h>
int main(void) {
    volatile int seed = 3; /* read at run time, so nothing is folded away */
    __m512i a = _mm512_set1_epi8((char)seed), b = _mm512_set1_epi8(2);
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b);      /* AVX512-VNNI */
    __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps((float)seed), _mm512_set1_ps(1.0f));
    __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), x, x);              /* AVX512-BF16 */
    __m256i h = _mm512_cvtepi32_epi16(acc);                              /* AVX512F/VL */
    __m512i m = _mm512_maskz_add_epi16(0x55555555, acc, acc);            /* AVX512BW */
    __m512d q = _mm512_cvtepi64_pd(_mm512_set1_epi64(seed));             /* AVX512DQ */
    int r = _mm512_reduce_add_epi32(acc) + (int)_mm512_reduce_add_ps(d) + _mm256_extract_epi16(h, 0)
        + _mm512_reduce_add_epi32(m) + (int)_mm512_reduce_add_pd(q);
    printf("%d\n", r);
    return r == 0;
}
C
flags="-mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw -mavx512vnni -mavx512bf16"
if ${CC:-cc} -O1 $flags "$work/probe.c" -o "$work/probe" 2>/dev/null && "$work/probe" >/dev/null 2>&1; then
  echo avx512
else
  echo portable
fi

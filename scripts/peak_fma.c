// Measures the fp32 FMA peak of this machine: gcc -O3 -mavx512f -fopenmp scripts/peak_fma.c -o /tmp/peak && /tmp/peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <omp.h>
// Peak fp32 FMA throughput: 16 independent AVX-512 FMA chains per thread.
int main() {
  const long iters = 200000000;
  double t0 = omp_get_wtime();
  float out = 0;
  int nt = 0;
#pragma omp parallel reduction(+:out)
  {
    nt = omp_get_num_threads();
    __m512 a[16];
    for (int i = 0; i < 16; ++i) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (long it = 0; it < iters; ++it)
      for (int i = 0; i < 16; ++i) a[i] = _mm512_fmadd_ps(a[i], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 16; ++i) s = _mm512_add_ps(s, a[i]);
    out += _mm512_reduce_add_ps(s);
  }
  double t = omp_get_wtime() - t0;
  printf("threads %d: %.1f GFLOP/s (%g)\n", nt, nt * iters * 16.0 * 16 * 2 / t / 1e9, out);
}

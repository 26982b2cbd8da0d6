/* y = bf16(x W^T + bias) for a few rows x: the linear layers of a decode step.
 *
 * A decode step multiplies 1-16 activation rows by every weight matrix of the model, so its
 * speed is how fast the weights stream from memory. oneDNN's packed bf16 linear reads them at
 * ~12 GB/s on one core of the dev machine; reading each weight row once, in order (the whole
 * matrix one sequential stream the hardware prefetcher follows) and dotting it with every
 * activation row while it sits in L1 reads at ~17 GB/s on 4 KiB pages and ~29 GB/s on 2 MiB
 * pages (the caller places the weights in a huge-page arena, see cpu_kernels.py).
 *
 *   w: [N, K] bf16 row-major    x: [B, K] bf16    bias: [N] bf16 or NULL    y: [B, N] bf16
 *
 * Sums are fp32 (AVX512-BF16 dot products, or a portable loop where the compiler has none);
 * the result is rounded to nearest even, as oneDNN's bf16 output.
 */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

static inline float bf16_to_f32(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

int gemv_bf16_vectorized(void) {
#if defined(__AVX512BF16__)
  return 1;
#else
  return 0;
#endif
}

#if defined(__AVX512BF16__)
/* NB activation rows against weight row wn (K values); one accumulator per row, two for NB == 1 */
#define DOT_ROWS(NB)                                                                        \
  static inline void dot_rows_##NB(const uint16_t* wn, const uint16_t* x, int64_t K, float* out) { \
    __m512 acc[NB], acc2 = _mm512_setzero_ps();                                               \
    for (int j = 0; j < NB; j++) acc[j] = _mm512_setzero_ps();                                \
    int64_t k = 0;                                                                            \
    if (NB == 1) {                                                                            \
      for (; k + 64 <= K; k += 64) {                                                          \
        acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)_mm512_loadu_si512(wn + k),               \
                                  (__m512bh)_mm512_loadu_si512(x + k));                        \
        acc2 = _mm512_dpbf16_ps(acc2, (__m512bh)_mm512_loadu_si512(wn + k + 32),              \
                                (__m512bh)_mm512_loadu_si512(x + k + 32));                     \
      }                                                                                       \
    }                                                                                         \
    for (; k + 32 <= K; k += 32) {                                                            \
      const __m512bh wk = (__m512bh)_mm512_loadu_si512(wn + k);                               \
      for (int j = 0; j < NB; j++)                                                            \
        acc[j] = _mm512_dpbf16_ps(acc[j], wk, (__m512bh)_mm512_loadu_si512(x + j * K + k));   \
    }                                                                                         \
    if (k < K) {                                                                              \
      const __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);                                 \
      const __m512bh wk = (__m512bh)_mm512_maskz_loadu_epi16(m, wn + k);                      \
      for (int j = 0; j < NB; j++)                                                            \
        acc[j] = _mm512_dpbf16_ps(acc[j], wk, (__m512bh)_mm512_maskz_loadu_epi16(m, x + j * K + k)); \
    }                                                                                         \
    acc[0] = _mm512_add_ps(acc[0], acc2);                                                     \
    for (int j = 0; j < NB; j++) out[j] = _mm512_reduce_add_ps(acc[j]);                       \
  }
DOT_ROWS(1)
DOT_ROWS(2)
DOT_ROWS(4)
DOT_ROWS(8)
#endif

#if !defined(__AVX512BF16__)
static void dot_row_portable(const uint16_t* wn, const uint16_t* x, int64_t K, int nb, float* out) {
  for (int j = 0; j < nb; j++) {
    float acc = 0.f;
#pragma omp simd reduction(+ : acc)
    for (int64_t k = 0; k < K; k++) acc += bf16_to_f32(wn[k]) * bf16_to_f32(x[j * K + k]);
    out[j] = acc;
  }
}
#endif

void gemv_bf16(const uint16_t* w, const uint16_t* bias, const uint16_t* x, uint16_t* y, int B, int N, int K,
               int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int n = 0; n < N; n++) {
    const uint16_t* wn = w + (int64_t)n * K;
    const float b_n = bias ? bf16_to_f32(bias[n]) : 0.f;
    float sums[8];
    for (int b0 = 0; b0 < B;) { /* the weight row stays in L1 across the passes */
      const int left = B - b0;
      const uint16_t* xb = x + (int64_t)b0 * K;
      int nb;
#if defined(__AVX512BF16__)
      if (left >= 8) {
        dot_rows_8(wn, xb, K, sums);
        nb = 8;
      } else if (left >= 4) {
        dot_rows_4(wn, xb, K, sums);
        nb = 4;
      } else if (left >= 2) {
        dot_rows_2(wn, xb, K, sums);
        nb = 2;
      } else {
        dot_rows_1(wn, xb, K, sums);
        nb = 1;
      }
#else
      nb = left < 8 ? left : 8;
      dot_row_portable(wn, xb, K, nb, sums);
#endif
      for (int j = 0; j < nb; j++) y[(int64_t)(b0 + j) * N + n] = f32_to_bf16(sums[j] + b_n);
      b0 += nb;
    }
  }
}

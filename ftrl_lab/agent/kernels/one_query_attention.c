/* One-query attention over key/value slabs: a decode step's attention on a CPU.
 *
 * Row b of the batch attends with the G query heads of each key/value head h to the first
 * min(lengths[b], max_len) keys of its slab (the engine's layout: row b's tokens sit at
 * positions 0 .. lengths[b] - 1), so no mask is read. Each key and value is read once per
 * (b, h) for all G query heads; scores go through a scratch row of `cap` floats per (b, h, g).
 *
 *   q, out: [B, KV, G, D] fp32      k, v: [B, KV, cap, D] fp32 or bf16 (max_len <= cap)
 *
 * Built by ftrl_lab/agent/cpu_kernels.py with the system C compiler (-O3 -march=native), which
 * vectorises the inner loops and the exponentials; the Python side falls back to torch ops
 * when no compiler is there. Compiled with -ffast-math, so no infinities are used here.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float f32_load(const float* p, int64_t i) { return p[i]; }

static inline float bf16_load(const uint16_t* p, int64_t i) { /* bf16 is the upper half of an fp32 */
  const uint32_t bits = (uint32_t)p[i] << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

#define ONE_QUERY_ATTENTION(NAME, KV_T, LOAD)                                                         \
  void NAME(const float* q, const KV_T* k, const KV_T* v, const int64_t* lengths, float* out,       \
            float* scratch, int B, int KV, int G, int D, int64_t cap, int64_t max_len, float scale, \
            int threads) {                                                                          \
    _Pragma("omp parallel for num_threads(threads) collapse(2) schedule(static)")                   \
    for (int b = 0; b < B; b++) {                                                                   \
      for (int h = 0; h < KV; h++) {                                                                \
        const int64_t T = lengths[b] < max_len ? lengths[b] : max_len;                              \
        const int64_t bh = (int64_t)b * KV + h;                                                     \
        const float* qh = q + bh * G * D;                                                           \
        const KV_T* kh = k + bh * cap * D;                                                          \
        const KV_T* vh = v + bh * cap * D;                                                          \
        float* oh = out + bh * G * D;                                                               \
        float* s = scratch + bh * G * cap;                                                          \
        for (int i = 0; i < G * D; i++) oh[i] = 0.f;                                                \
        if (T <= 0) continue;                                                                       \
        for (int64_t t = 0; t < T; t++) { /* scores: each key read once for the G query heads */   \
          const KV_T* kt = kh + t * D;                                                              \
          for (int g = 0; g < G; g++) {                                                             \
            const float* qg = qh + g * D;                                                           \
            float acc = 0.f;                                                                        \
            _Pragma("omp simd reduction(+ : acc)")                                                  \
            for (int d = 0; d < D; d++) acc += qg[d] * LOAD(kt, d);                                 \
            s[g * cap + t] = acc * scale;                                                           \
          }                                                                                         \
        }                                                                                           \
        for (int g = 0; g < G; g++) { /* softmax over the row's keys */                            \
          float* sg = s + g * cap;                                                                  \
          float m = -FLT_MAX;                                                                       \
          for (int64_t t = 0; t < T; t++) m = sg[t] > m ? sg[t] : m;                                \
          float sum = 0.f;                                                                          \
          _Pragma("omp simd reduction(+ : sum)")                                                    \
          for (int64_t t = 0; t < T; t++) {                                                         \
            const float e = expf(sg[t] - m);                                                        \
            sg[t] = e;                                                                              \
            sum += e;                                                                               \
          }                                                                                         \
          const float inv = 1.f / sum;                                                              \
          _Pragma("omp simd")                                                                       \
          for (int64_t t = 0; t < T; t++) sg[t] *= inv;                                             \
        }                                                                                           \
        for (int64_t t = 0; t < T; t++) { /* weighted values: each value read once */              \
          const KV_T* vt = vh + t * D;                                                              \
          for (int g = 0; g < G; g++) {                                                             \
            const float p = s[g * cap + t];                                                         \
            float* og = oh + g * D;                                                                 \
            _Pragma("omp simd")                                                                     \
            for (int d = 0; d < D; d++) og[d] += p * LOAD(vt, d);                                   \
          }                                                                                         \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }

ONE_QUERY_ATTENTION(one_query_attention_f32, float, f32_load)
ONE_QUERY_ATTENTION(one_query_attention_bf16, uint16_t, bf16_load)

/* One-query attention over fp32 key/value slabs: a decode step's attention on a CPU.
 *
 * Row b of the batch attends with the G query heads of each key/value head h to the first
 * lengths[b] keys of its slab (the engine's layout: row b's tokens sit at positions
 * 0 .. lengths[b] - 1), so no mask is read. Each key and value is read once per (b, h) for all
 * G query heads; scores go through a scratch row of `cap` floats per (b, h, g).
 *
 *   q, out:  [B, KV, G, D]      k, v: [B, KV, cap, D] (only the first min(lengths[b], max_len) rows are read)
 *
 * Built by ftrl_lab/agent/cpu_kernels.py with the system C compiler (-O3 -march=native), which
 * vectorises the inner loops and the exponentials; the Python side falls back to torch ops
 * when no compiler is there. Compiled with -ffast-math, so no infinities are used here.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

void one_query_attention_f32(const float* q, const float* k, const float* v, const int64_t* lengths,
                             float* out, float* scratch, int B, int KV, int G, int D, int64_t cap,
                             int64_t max_len, float scale, int threads) {
#pragma omp parallel for num_threads(threads) collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < KV; h++) {
      const int64_t T = lengths[b] < max_len ? lengths[b] : max_len; /* max_len <= cap */
      const int64_t bh = (int64_t)b * KV + h;
      const float* qh = q + bh * G * D;
      const float* kh = k + bh * cap * D;
      const float* vh = v + bh * cap * D;
      float* oh = out + bh * G * D;
      float* s = scratch + bh * G * cap;
      for (int i = 0; i < G * D; i++) oh[i] = 0.f;
      if (T <= 0) continue;
      for (int64_t t = 0; t < T; t++) { /* scores: each key read once for the G query heads */
        const float* kt = kh + t * D;
        for (int g = 0; g < G; g++) {
          const float* qg = qh + g * D;
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int d = 0; d < D; d++) acc += qg[d] * kt[d];
          s[g * cap + t] = acc * scale;
        }
      }
      for (int g = 0; g < G; g++) { /* softmax over the row's keys */
        float* sg = s + g * cap;
        float m = -FLT_MAX;
        for (int64_t t = 0; t < T; t++) m = sg[t] > m ? sg[t] : m;
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int64_t t = 0; t < T; t++) {
          const float e = expf(sg[t] - m);
          sg[t] = e;
          sum += e;
        }
        const float inv = 1.f / sum;
#pragma omp simd
        for (int64_t t = 0; t < T; t++) sg[t] *= inv;
      }
      for (int64_t t = 0; t < T; t++) { /* weighted values: each value read once */
        const float* vt = vh + t * D;
        for (int g = 0; g < G; g++) {
          const float p = s[g * cap + t];
          float* og = oh + g * D;
#pragma omp simd
          for (int d = 0; d < D; d++) og[d] += p * vt[d];
        }
      }
    }
  }
}

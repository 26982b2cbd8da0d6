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

/* x[0..T) <- softmax(x[0..T)) */
static inline void softmax_in_place(float* x, int64_t T) {
  float m = -FLT_MAX;
  for (int64_t t = 0; t < T; t++) m = x[t] > m ? x[t] : m;
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t t = 0; t < T; t++) {
    const float e = expf(x[t] - m);
    x[t] = e;
    sum += e;
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t t = 0; t < T; t++) x[t] *= inv;
}

/* One (row, key/value head): the G queries qh [G, D] attend to T keys kh / values vh [T, D];
 * oh [G, D] starts at 0; s holds G rows of cap scores. */
typedef void (*head_fn)(const float* qh, const void* kh, const void* vh, float* oh, float* s, int G, int D,
                        int64_t T, int64_t cap, float scale);

/* The portable loop: each key and value read once for the G query heads. */
#define GENERIC_HEAD(NAME, KV_T, LOAD)                                                                 \
  static void NAME(const float* qh, const void* k_, const void* v_, float* oh, float* s, int G, int D, \
                   int64_t T, int64_t cap, float scale) {                                              \
    const KV_T* kh = (const KV_T*)k_;                                                                  \
    const KV_T* vh = (const KV_T*)v_;                                                                  \
    for (int64_t t = 0; t < T; t++) { /* scores */                                                     \
      const KV_T* kt = kh + t * D;                                                                     \
      for (int g = 0; g < G; g++) {                                                                    \
        const float* qg = qh + g * D;                                                                  \
        float acc = 0.f;                                                                               \
        _Pragma("omp simd reduction(+ : acc)")                                                         \
        for (int d = 0; d < D; d++) acc += qg[d] * LOAD(kt, d);                                        \
        s[g * cap + t] = acc * scale;                                                                  \
      }                                                                                                \
    }                                                                                                  \
    for (int g = 0; g < G; g++) softmax_in_place(s + g * cap, T);                                     \
    for (int64_t t = 0; t < T; t++) { /* weighted values */                                            \
      const KV_T* vt = vh + t * D;                                                                     \
      for (int g = 0; g < G; g++) {                                                                    \
        const float p = s[g * cap + t];                                                                \
        float* og = oh + g * D;                                                                        \
        _Pragma("omp simd")                                                                            \
        for (int d = 0; d < D; d++) og[d] += p * LOAD(vt, d);                                          \
      }                                                                                                \
    }                                                                                                  \
  }

GENERIC_HEAD(head_f32_generic, float, f32_load)
GENERIC_HEAD(head_bf16_generic, uint16_t, bf16_load)

#if defined(__AVX512F__)
/* The AVX-512 path, 16 keys at a time: the block's keys (then values) are widened to fp32 once
 * into an L1 buffer and serve all G query heads; the 16 dot products of a head come out of one
 * transpose-and-add tree instead of 16 horizontal sums, and each key's chain is independent. */
#include <immintrin.h>

static inline __m512 load16_f32(const float* p) { return _mm512_loadu_ps(p); }
static inline __m512 load16_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)p)), 16));
}

/* r[j] = sum of the 16 lanes of v[j] */
static inline __m512 sum16(const __m512* v) {
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; i++) /* [key 2i | key 2i+1], 8 partial sums each */
    w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  for (int i = 0; i < 4; i++) /* 128-bit lane L: key 4i + L, 4 partial sums */
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xDD));
  for (int i = 0; i < 2; i++) /* lane L: keys 8i + L (elements 0, 1), 8i + 4 + L (2, 3) */
    y[i] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0x44), _mm512_shuffle_ps(x[2 * i], x[2 * i + 1], 0xEE));
  /* lane L, element e: key 4e + L */
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xDD));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

#define BLOCKED_HEAD(NAME, KV_T, LOAD16)                                                               \
  static void NAME(const float* qh, const void* k_, const void* v_, float* oh, float* s, int G, int D, \
                   int64_t T, int64_t cap, float scale) {                                              \
    const KV_T* kh = (const KV_T*)k_;                                                                  \
    const KV_T* vh = (const KV_T*)v_;                                                                  \
    const int C = D / 16;                                                                              \
    float block[16 * 256];                                                                             \
    const __m512 vscale = _mm512_set1_ps(scale);                                                       \
    int64_t t = 0;                                                                                     \
    for (; t + 16 <= T; t += 16) { /* scores of 16 keys */                                             \
      for (int j = 0; j < 16; j++)                                                                     \
        for (int c = 0; c < C; c++) _mm512_storeu_ps(block + j * D + 16 * c, LOAD16(kh + (t + j) * D + 16 * c)); \
      for (int g = 0; g < G; g++) {                                                                    \
        const float* qg = qh + g * D;                                                                  \
        __m512 acc[16];                                                                                \
        const __m512 q0 = _mm512_loadu_ps(qg);                                                         \
        for (int j = 0; j < 16; j++) acc[j] = _mm512_mul_ps(q0, _mm512_loadu_ps(block + j * D));        \
        for (int c = 1; c < C; c++) {                                                                  \
          const __m512 qc = _mm512_loadu_ps(qg + 16 * c);                                              \
          for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(qc, _mm512_loadu_ps(block + j * D + 16 * c), acc[j]); \
        }                                                                                              \
        _mm512_storeu_ps(s + g * cap + t, _mm512_mul_ps(sum16(acc), vscale));                          \
      }                                                                                                \
    }                                                                                                  \
    for (; t < T; t++) /* the last < 16 keys */                                                        \
      for (int g = 0; g < G; g++) {                                                                    \
        __m512 a = _mm512_setzero_ps();                                                                \
        for (int c = 0; c < C; c++) a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + g * D + 16 * c), LOAD16(kh + t * D + 16 * c), a); \
        s[g * cap + t] = _mm512_reduce_add_ps(a) * scale;                                              \
      }                                                                                                \
    for (int g = 0; g < G; g++) softmax_in_place(s + g * cap, T);                                     \
    for (t = 0; t < T; t += 16) { /* weighted values, 16 keys at a time */                             \
      const int n = T - t < 16 ? (int)(T - t) : 16;                                                    \
      for (int j = 0; j < n; j++)                                                                      \
        for (int c = 0; c < C; c++) _mm512_storeu_ps(block + j * D + 16 * c, LOAD16(vh + (t + j) * D + 16 * c)); \
      for (int g = 0; g < G; g++) {                                                                    \
        const float* pg = s + g * cap + t;                                                             \
        float* og = oh + g * D;                                                                        \
        for (int c = 0; c < C; c++) { /* four chains per 16-wide slice of the output */               \
          __m512 a[4] = {_mm512_loadu_ps(og + 16 * c), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()}; \
          int j = 0;                                                                                   \
          for (; j + 4 <= n; j += 4)                                                                   \
            for (int u = 0; u < 4; u++)                                                                \
              a[u] = _mm512_fmadd_ps(_mm512_set1_ps(pg[j + u]), _mm512_loadu_ps(block + (j + u) * D + 16 * c), a[u]); \
          for (; j < n; j++) a[0] = _mm512_fmadd_ps(_mm512_set1_ps(pg[j]), _mm512_loadu_ps(block + j * D + 16 * c), a[0]); \
          _mm512_storeu_ps(og + 16 * c, _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]))); \
        }                                                                                              \
      }                                                                                                \
    }                                                                                                  \
  }

BLOCKED_HEAD(head_f32_avx512, float, load16_f32)
BLOCKED_HEAD(head_bf16_avx512, uint16_t, load16_bf16)
#define BLOCKED_OK(D) ((D) % 16 == 0 && (D) <= 256)
#else
#define BLOCKED_OK(D) 0
#define head_f32_avx512 head_f32_generic
#define head_bf16_avx512 head_bf16_generic
#endif

static void over_heads(head_fn head, size_t kv_size, const float* q, const void* k, const void* v,
                       const int64_t* lengths, float* out, float* scratch, int B, int KV, int G, int D, int64_t cap,
                       int64_t max_len, float scale, int threads) {
#pragma omp parallel for num_threads(threads) collapse(2) schedule(static)
  for (int b = 0; b < B; b++) {
    for (int h = 0; h < KV; h++) {
      const int64_t T = lengths[b] < max_len ? lengths[b] : max_len;
      const int64_t bh = (int64_t)b * KV + h;
      float* oh = out + bh * G * D;
      for (int i = 0; i < G * D; i++) oh[i] = 0.f;
      if (T <= 0) continue;
      const size_t at = (size_t)(bh * cap * D) * kv_size;
      head(q + bh * G * D, (const char*)k + at, (const char*)v + at, oh, scratch + bh * G * cap, G, D, T, cap, scale);
    }
  }
}

void one_query_attention_f32(const float* q, const float* k, const float* v, const int64_t* lengths, float* out,
                             float* scratch, int B, int KV, int G, int D, int64_t cap, int64_t max_len, float scale,
                             int threads) {
  over_heads(BLOCKED_OK(D) ? head_f32_avx512 : head_f32_generic, sizeof(float), q, k, v, lengths, out, scratch, B, KV,
             G, D, cap, max_len, scale, threads);
}

void one_query_attention_bf16(const float* q, const uint16_t* k, const uint16_t* v, const int64_t* lengths,
                              float* out, float* scratch, int B, int KV, int G, int D, int64_t cap, int64_t max_len,
                              float scale, int threads) {
  over_heads(BLOCKED_OK(D) ? head_bf16_avx512 : head_bf16_generic, sizeof(uint16_t), q, k, v, lengths, out, scratch,
             B, KV, G, D, cap, max_len, scale, threads);
}

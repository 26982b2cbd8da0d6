/* The small ops of a Llama-family decode step, fused: what sits between its four linears.
 *
 * At batch 1 a decode step of a 135M model spends ~4.5 ms of ~31 in two dozen tiny tensor ops
 * per layer (norms, casts, rotary embedding, cache writes, SiLU gate, residual adds), each a
 * few microseconds of dispatch for a few hundred floats. These three calls replace them:
 *
 *   add_rms_norm_bf16   x += y (bf16, optional); out = bf16(rms_norm(x) * w)
 *   rope_attend         per-head q/k norms (optional), rotary embedding, this step's key and
 *                       value written into the slabs, one-query attention, out = bf16(attn)
 *   silu_mul_bf16       out = bf16(bf16(silu(gate)) * up)   (torch's two bf16 roundings)
 *
 * Numerics follow the torch ops they replace (fp32 math, round-to-nearest-even to bf16); sums
 * may associate differently. Layouts: x, y, out rows of H; qkv rows of (NH + 2 KV) * D bf16
 * (q heads, then k, then v); cos/sin rows of D; slabs [B, KV, cap, D] fp32 or bf16.
 * Built together with one_query_attention.c by ftrl_lab/agent/cpu_kernels.py.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

void one_query_attention_f32(const float* q, const float* k, const float* v, const int64_t* lengths, float* out,
                             float* scratch, int B, int KV, int G, int D, int64_t cap, int64_t max_len, float scale,
                             int threads);
void one_query_attention_bf16(const float* q, const uint16_t* k, const uint16_t* v, const int64_t* lengths,
                              float* out, float* scratch, int B, int KV, int G, int D, int64_t cap, int64_t max_len,
                              float scale, int threads);

static inline float from_bf16(uint16_t h) {
  const uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static inline uint16_t to_bf16(float f) { /* round to nearest even, as torch's cast */
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

static inline void rms_norm_row(float* x, const float* w, float eps, int n) { /* in place */
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int i = 0; i < n; i++) ss += x[i] * x[i];
  const float r = 1.f / sqrtf(ss / (float)n + eps);
#pragma omp simd
  for (int i = 0; i < n; i++) x[i] = x[i] * r * w[i];
}

void add_rms_norm_bf16(float* x, const uint16_t* y, const float* w, float eps, uint16_t* out, int B, int H) {
  float row[H];
  for (int b = 0; b < B; b++) {
    float* xb = x + (int64_t)b * H;
    if (y) {
      const uint16_t* yb = y + (int64_t)b * H;
#pragma omp simd
      for (int i = 0; i < H; i++) xb[i] += from_bf16(yb[i]);
    }
    memcpy(row, xb, sizeof row);
    rms_norm_row(row, w, eps, H);
    uint16_t* ob = out + (int64_t)b * H;
#pragma omp simd
    for (int i = 0; i < H; i++) ob[i] = to_bf16(row[i]);
  }
}

void silu_mul_bf16(const uint16_t* gate_up, uint16_t* out, int B, int I) {
  for (int b = 0; b < B; b++) {
    const uint16_t* g = gate_up + (int64_t)b * 2 * I;
    const uint16_t* u = g + I;
    uint16_t* o = out + (int64_t)b * I;
#pragma omp simd
    for (int i = 0; i < I; i++) {
      const float gi = from_bf16(g[i]);
      const float s = from_bf16(to_bf16(gi / (1.f + expf(-gi))));
      o[i] = to_bf16(s * from_bf16(u[i]));
    }
  }
}

static void rotate(float* t, const float* cos, const float* sin, int D) { /* t*cos + rotate_half(t)*sin */
  const int half = D / 2;
  float r[D];
  for (int i = 0; i < half; i++) {
    r[i] = t[i] * cos[i] - t[i + half] * sin[i];
    r[i + half] = t[i + half] * cos[i + half] + t[i] * sin[i + half];
  }
  memcpy(t, r, sizeof r);
}

/* q_out: [B, NH, D] fp32 scratch for the rotated queries; attn: [B, NH, D] fp32 scratch;
 * out: [B, NH * D] bf16. q_norm/k_norm: per-head RMS norm weights (D) or NULL. */
void rope_attend(const uint16_t* qkv, const float* cos, const float* sin, const int64_t* positions,
                 const float* q_norm, const float* k_norm, float qk_eps, void* keys, void* values, int slab_bf16,
                 int64_t cap, int64_t kv_len, float scale, float* q_out, float* attn, float* scratch,
                 int64_t* lengths, uint16_t* out, int B, int NH, int KV, int D, int threads) {
  const int W = (NH + 2 * KV) * D;
  for (int b = 0; b < B; b++) {
    const uint16_t* row = qkv + (int64_t)b * W;
    const float* cb = cos + (int64_t)b * D;
    const float* sb = sin + (int64_t)b * D;
    const int64_t pos = positions[b];
    lengths[b] = pos + 1;
    if (pos < 0 || pos >= cap) continue; /* the Python side checks; never write outside the slab */
    float t[D];
    for (int h = 0; h < NH + KV; h++) { /* queries, then keys */
      for (int i = 0; i < D; i++) t[i] = from_bf16(row[h * D + i]);
      const float* nw = h < NH ? q_norm : k_norm;
      if (nw) rms_norm_row(t, nw, qk_eps, D);
      rotate(t, cb, sb, D);
      if (h < NH) {
        memcpy(q_out + ((int64_t)b * NH + h) * D, t, sizeof t);
        continue;
      }
      const int64_t at = (((int64_t)b * KV + (h - NH)) * cap + pos) * D;
      if (slab_bf16)
        for (int i = 0; i < D; i++) ((uint16_t*)keys)[at + i] = to_bf16(t[i]);
      else
        memcpy((float*)keys + at, t, sizeof t);
    }
    for (int h = 0; h < KV; h++) { /* values: as computed */
      const uint16_t* v = row + (NH + KV + h) * D;
      const int64_t at = (((int64_t)b * KV + h) * cap + pos) * D;
      if (slab_bf16)
        memcpy((uint16_t*)values + at, v, D * sizeof(uint16_t));
      else
        for (int i = 0; i < D; i++) ((float*)values)[at + i] = from_bf16(v[i]);
    }
  }
  if (slab_bf16)
    one_query_attention_bf16(q_out, (const uint16_t*)keys, (const uint16_t*)values, lengths, attn, scratch, B, KV,
                             NH / KV, D, cap, kv_len, scale, threads);
  else
    one_query_attention_f32(q_out, (const float*)keys, (const float*)values, lengths, attn, scratch, B, KV, NH / KV,
                            D, cap, kv_len, scale, threads);
  const int64_t n = (int64_t)B * NH * D;
#pragma omp simd
  for (int64_t i = 0; i < n; i++) out[i] = to_bf16(attn[i]);
}

// The vector types and float32 math of the fused LSTM kernel (lstm_fused.cpp includes it):
// tile width, loads and stores, clamps, and the exp/expm1 core behind sigmoid, tanh and log.
// lft.rules.lstm_fused hashes this file with the kernel's source, so editing it rebuilds.

#pragma once

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// floats per vector (coordinates per tile): the target's register width (vectors wider than
// the registers spill, 9x slower on AVX2 at 16)
#if defined(__AVX512F__)
#define V 16
#elif defined(__AVX__)
#define V 8
#else
#define V 4
#endif
#define MAXH 64                   // the Python side falls back beyond these
#define MAXIN 8
#define PF 128                    // prefetch distance along every row, in floats (32..512 alike)
#define PREF(p, rw) __builtin_prefetch((p) + PF, rw, 3)

typedef float vf __attribute__((vector_size(4 * V)));
typedef float vfu __attribute__((vector_size(4 * V), aligned(4)));  // unaligned access
typedef int32_t vi __attribute__((vector_size(4 * V)));
typedef int32_t viu __attribute__((vector_size(4 * V), aligned(4)));

enum { RAW = 0, LOGSIGN = 1, ADAM = 2, PARAM = 3, ROLE = 4 };
// scalars: p-related, raw scale, Adam's coefficients (the caller's BC1, BC2 and HEAD_B are
// ignored: filled in from the step counter and the head's bias)
enum { INV_P, EXP_MP, EXP_P, RAW_SCALE, B1W, B2, ONE_M_B2, BC1, BC2, EPS2, HEAD_B, OUT_SCALE,
       N_SCAL };

static inline vf ld(const float *p) { return *(const vfu *)p; }
static inline void st(float *p, vf x) { *(vfu *)p = x; }
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
static const vi SIGN = vi{} + (int32_t)0x80000000;

// Costs on the target (Zen 4, 512-bit): multiplies, multiply-adds, compares, ternary logic
// and vscalefps (two slots) share the two FMA pipes, the kernel's bottleneck; adds, rounding,
// vrangeps, and/or/xor, shifts and conversions issue beside them; divisions (about one per 6
// cycles) run in their own unit. Below, everything that can leaves the FMA pipes.
#if defined(__AVX512F__) && defined(__AVX512DQ__)
// sign(x) min(|x|, c) and min(|x|, c), one instruction each (a NaN x gives +-c)
static inline vf clamp_sym(vf x, float c) {
    return (vf)_mm512_range_ps((__m512)x, _mm512_set1_ps(c), 0x2);
}
static inline vf clamp_abs(vf x, float c) {
    return (vf)_mm512_range_ps((__m512)x, _mm512_set1_ps(c), 0xa);
}
#else
// the comparisons are false for a NaN x, which is returned
static inline vf clamp_sym(vf x, float c) {
    x = x > c ? vf{} + c : x;
    return x < -c ? vf{} - c : x;
}
static inline vf clamp_abs(vf x, float c) {
    x = (vf)((vi)x & ~SIGN);
    return x > c ? vf{} + c : x;
}
#endif

// exp and expm1 share one core: 2^n (1 + q) with n = round(a / ln 2), r = a - n ln 2 in
// [-ln2/2, ln2/2] (ln 2 split in two), q = expm1(r) = r + r^2 P(r), P of degree 4 (minimax,
// 1.3e-8 relative). C0..C4 are P's coefficients. n is rounded by adding MAGIC (1.5 2^23) in
// the multiply-add that scales a: t = MAGIC + n exactly, and t's bits shifted left by 23 are
// n's bits in the exponent field (MAGIC's low 9 bits are zero), so 2^n is built with integer
// operations instead of vscalefps.
#define C0 4.999999701976776e-1f
#define C1 1.666654348373413e-1f
#define C2 4.166719689965248e-2f
#define C3 8.366559632122517e-3f
#define C4 1.3882970670238137e-3f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO 2.12194440e-4f      // ln 2 = LN2_HI - LN2_LO
#define MAGIC 12582912.0f

static inline vi exp_bits(vf t) { return (vi)t << 23; }  // n << 23 for t = MAGIC + n

// The functions below work on N independent vectors at once, each step written for all N
// before the next: the dependency chains of a unit's gates are long (multiply-adds, then the
// exponential, a division, the cell's tanh, another division), and N units interleaved give
// the out-of-order core independent work within its window.
#define EACH for (int j = 0; j < N; j++)

// exp(-x), |x| clamped to 86 (so that 2^n (1 + q) stays normal), for the sigmoid
// 1 / (1 + exp(-x)).
template <int N>
static inline void e_neg(const vf *x_, vf *out) {
    vf x[N], t[N], n[N], r[N], p[N];
    EACH x[j] = clamp_sym(x_[j], 86.0f);
    EACH t[j] = x[j] * -LOG2E + MAGIC;
    EACH n[j] = t[j] - MAGIC;
    EACH r[j] = -(n[j] * LN2_HI) - x[j];  // -x - n ln2, the negation folded into the FMAs
    EACH r[j] = r[j] + n[j] * LN2_LO;
    EACH p[j] = r[j] * C4 + C3;
    EACH p[j] = p[j] * r[j] + C2;
    EACH p[j] = p[j] * r[j] + C1;
    EACH p[j] = p[j] * r[j] + C0;
    EACH p[j] = (r[j] * r[j]) * p[j] + r[j];  // expm1(r)
    EACH out[j] = (vf)((vi)(p[j] + 1.0f) + exp_bits(t[j]));
}

// -expm1(-2|x|) = 1 - exp(-2|x|) in [0, 1), relative accuracy near 0 (no cancellation: 1 - 2^n
// is exact): the core at a = -2|x| written in r' = r/2 (coefficients scaled by powers of
// two, exact). |x| is clamped to 10: beyond, it rounds to 1.
template <int N>
static inline void m_expm1_m2abs(const vf *x, vf *out) {
    vf a[N], t[N], n[N], r[N], p[N];
    EACH a[j] = clamp_abs(x[j], 10.0f);
    EACH t[j] = a[j] * (-2.0f * LOG2E) + MAGIC;
    EACH n[j] = t[j] - MAGIC;
    // -|x| - n ln2 / 2 with ln 2 in one float: n <= 29 here, an error below 3e-8 relative
    // on exp(-2|x|) where it is not negligible against 1 (the split form costs a multiply-add)
    EACH r[j] = -(n[j] * (0.5f * 0.693147182464599609375f)) - a[j];
    EACH p[j] = r[j] * (64.0f * C4) + 32.0f * C3;
    EACH p[j] = p[j] * r[j] + 16.0f * C2;
    EACH p[j] = p[j] * r[j] + 8.0f * C1;
    EACH p[j] = p[j] * r[j] + 4.0f * C0;
    EACH p[j] = r[j] * (p[j] * r[j] + 2.0f);  // expm1(2 r)
    EACH t[j] = (vf)(exp_bits(t[j]) + (127 << 23));  // 2^n
    EACH out[j] = (1.0f - t[j]) - t[j] * p[j];      // +0 at x = 0
}

// m (>= 0) with the sign of x (GCC fuses the and + xor into one vpternlogd; kept apart, no
// faster)
static inline vf with_sign_of(vf m, vf x) { return (vf)((vi)m ^ ((vi)x & SIGN)); }

// tanh(x) = sign(x) m / (2 - m), m = 1 - exp(-2|x|)
static inline vf vtanh(vf x) {
    vf m;
    m_expm1_m2abs<1>(&x, &m);
    return with_sign_of(m, x) / (2.0f - m);
}

static inline vf vlog(vf x) {  // x > 0, normal
    vi xi = (vi)x;
    vi e = ((xi >> 23) & 0xff) - 126;
    vf m = (vf)((xi & 0x807fffff) | 0x3f000000);  // [0.5, 1)
    vi lo = m < 0.707106781186547524f;
    e = e + lo;                                    // lo is -1 where true
    m = m - 1.0f + (vf)(lo & (vi)m);
    vf z = m * m;
    vf y = vf{} + 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    vf ef = __builtin_convertvector(e, vf);
    y = y + ef * -2.12194440e-4f;
    y = y - 0.5f * z;
    return m + y + ef * 0.693359375f;
}

// The coordinate LSTM's no-grad step fused into one pass over the coordinates (lft.rules.lstm_fused).
//
// Per chunk of LANES coordinates, everything stays in registers: the input features from the
// gradient (and the Adam moments, updated here), every LSTM layer (gate products, sigmoid/tanh,
// c and h), the head and its tanh. Each coordinate's state is read once and written once, and
// no intermediate of the step goes to memory. Written with GCC vector extensions, so the same
// source vectorises for whatever the compiler targets (-march=native: AVX-512, AVX2, NEON).
// sigmoid, tanh, exp and log are Cephes-style float32 approximations (a few ulp), so the
// results equal the reference kernel's to float32 rounding, not bit for bit.
//
// Built by lft.rules.lstm_fused at first use and called through ctypes (plain C ABI).

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define V 16                      // floats per vector
#define NV 2                      // vectors per chunk: LANES coordinates
#define LANES (V * NV)
#define MAXH 64                   // the Python side falls back beyond these
#define MAXIN 8

typedef float vf __attribute__((vector_size(4 * V)));
typedef int32_t vi __attribute__((vector_size(4 * V)));

enum { RAW = 0, LOGSIGN = 1, ADAM = 2, PARAM = 3, ROLE = 4 };
// scalars: p-related, raw scale, Adam's coefficients (bias corrections computed by torch)
enum { INV_P, EXP_MP, EXP_P, RAW_SCALE, B1W, B2, ONE_M_B2, BC1, BC2, EPS2, HEAD_B, OUT_SCALE,
       N_SCAL };

static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }

static inline vf vexp(vf x) {
    x = vmin(vmax(x, vf{} - 87.0f), vf{} + 88.0f);
    vf fx = x * 1.44269504088896341f;
    fx = (fx + 12582912.0f) - 12582912.0f;  // round to nearest (|fx| < 2^22)
    vf r = x - fx * 0.693359375f;
    r = r + fx * 2.12194440e-4f;
    vf y = vf{} + 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * (r * r) + r + 1.0f;
    vi n = __builtin_convertvector(fx, vi);
    vi bits = (n + 127) << 23;
    return y * (vf)bits;
}

static inline vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

static inline vf vtanh(vf x) {
    // 1 - 2 / (e^2x + 1) for |x| >= 0.625, Cephes' odd polynomial below (no cancellation)
    vf big = 1.0f - 2.0f / (vexp(x + x) + 1.0f);
    vf z = x * x;
    vf s = vf{} - 5.70498872745e-3f;
    s = s * z + 2.06390887954e-2f;
    s = s * z - 5.37397155531e-2f;
    s = s * z + 1.33314422036e-1f;
    s = s * z - 3.33332819422e-1f;
    s = s * z * x + x;
    vi small = (x * x) < (0.625f * 0.625f);
    return (vf)((small & (vi)s) | (~small & (vi)big));
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

static inline void load(vf *dst, const float *src, long cnt) {
    if (cnt == LANES) { memcpy(dst, src, sizeof(float) * LANES); return; }
    memset(dst, 0, sizeof(float) * LANES);
    memcpy(dst, src, sizeof(float) * cnt);
}

static inline void store(float *dst, const vf *src, long cnt) {
    memcpy(dst, src, sizeof(float) * cnt);
}

// Blocks of BLK coordinates, each in phases that stream few rows at a time: the features of
// the block, then per layer its previous h rows copied in, then per hidden unit all the
// block's chunks (its gates, c and h: two rows read, two written), then the head. A chunk
// touching every state row at once (46 streams) was twice as slow on 10^5 coordinates: more
// streams than the hardware prefetchers follow. The block's inputs stay in L1/L2.
#define BLK 512
#define NCH (BLK / LANES)

struct Scratch {
    vf x[MAXIN + 2 * MAXH][BLK / V];  // the layer's inputs, then its previous h
    vf hcur[MAXH][BLK / V];           // the layer's new h
    int32_t rl[BLK];                  // role per coordinate
    bool uniform[NCH];                // one role over the chunk
};

static void features(Scratch *s, long i0, long bn, int n_feat, const int32_t *feats,
                     const float *g, const float *theta, const float *m_in, const float *v_in,
                     float *m_out, float *v_out, const float *scal) {
    for (int ch = 0; ch * LANES < bn; ch++) {
        const long at = i0 + ch * LANES, cnt = bn - ch * LANES < LANES ? bn - ch * LANES : LANES;
        const int c0 = ch * NV;
        vf gv[NV];
        load(gv, g + at, cnt);
        int k = 0;
        for (int f = 0; f < n_feat; f++) {
            switch (feats[f]) {
            case RAW:
                for (int j = 0; j < NV; j++) s->x[k][c0 + j] = gv[j] * scal[RAW_SCALE];
                k++;
                break;
            case LOGSIGN:
                for (int j = 0; j < NV; j++) {
                    vf a = vmax(vmax(gv[j], -gv[j]), vf{} + scal[EXP_MP]);
                    s->x[k][c0 + j] = vlog(a) * scal[INV_P];
                    s->x[k + 1][c0 + j] = vmin(vmax(gv[j] * scal[EXP_P], vf{} - 1.0f),
                                               vf{} + 1.0f);
                }
                k += 2;
                break;
            case ADAM: {
                vf mv[NV], vv[NV];
                load(mv, m_in + at, cnt);
                load(vv, v_in + at, cnt);
                for (int j = 0; j < NV; j++) {
                    mv[j] = mv[j] + scal[B1W] * (gv[j] - mv[j]);
                    vv[j] = vv[j] * scal[B2] + scal[ONE_M_B2] * (gv[j] * gv[j]);
                    vf den = vv[j] / scal[BC2] + scal[EPS2];
                    vf r;  // 1 / sqrt: vectorised with -fno-math-errno
                    for (int l = 0; l < V; l++) r[l] = 1.0f / __builtin_sqrtf(den[l]);
                    s->x[k][c0 + j] = (mv[j] * r) / scal[BC1];
                    s->x[k + 1][c0 + j] = gv[j] * r;
                }
                store(m_out + at, mv, cnt);
                store(v_out + at, vv, cnt);
                k += 2;
                break;
            }
            case PARAM:
                load(&s->x[k][c0], theta + at, cnt);
                k++;
                break;
            default:  // ROLE: folded into the gate biases (role_tab)
                break;
            }
        }
    }
}

// Returns 0, or a negative code for arguments the kernel does not handle (nothing written).
extern "C" int lft_lstm_step(
    long n, int hidden, int layers, int n_feat, const int32_t *feats,
    const float *g, const float *theta, const float *m_in, const float *v_in,
    float *m_out, float *v_out, const int32_t *role, long period,
    const float *const *hc_in, float *const *hc_out,
    const float *wpack,      // per layer (hidden, K_l, 4) with gates i, f, g, o; K_l = in_l + hidden
    const float *bias,       // per layer (hidden, 4), or NULL
    const float *role_tab,   // (n_roles, hidden, 4): role columns (+ layer-0 bias), or NULL
    const float *head_w, int bounded, const float *scal, float *out) {
    const int H = hidden;
    if (H < 1 || H > MAXH || layers < 1 || n_feat > MAXIN) return -1;
    int n_in = 0;
    for (int f = 0; f < n_feat; f++) n_in += (feats[f] == LOGSIGN || feats[f] == ADAM) ? 2 : 1;
    if (n_in > MAXIN) return -2;
    Scratch *s = (Scratch *)aligned_alloc(64, sizeof(Scratch));
    if (!s) return -3;
    for (long i0 = 0; i0 < n; i0 += BLK) {
        const long bn = n - i0 < BLK ? n - i0 : BLK;
        const int nch = (int)((bn + LANES - 1) / LANES);
        features(s, i0, bn, n_feat, feats, g, theta, m_in, v_in, m_out, v_out, scal);
        if (role) {
            long p = i0 % period;
            for (long l = 0; l < bn; l++) {
                s->rl[l] = role[p];
                if (++p == period) p = 0;
            }
            for (int ch = 0; ch < nch; ch++) {
                const int a = ch * LANES, e = a + LANES < bn ? a + LANES : (int)bn;
                bool u = true;
                for (int l = a + 1; l < e; l++) u &= s->rl[l] == s->rl[a];
                s->uniform[ch] = u;
                for (int l = e; l < a + LANES; l++) s->rl[l] = s->rl[a];  // tail lanes
            }
        }
        int in_l = n_in;
        const float *w = wpack;
        for (int layer = 0; layer < layers; layer++) {
            const int K = in_l + H;
            const float *hp = hc_in[2 * layer], *cp = hc_in[2 * layer + 1];
            float *hn = hc_out[2 * layer], *cn = hc_out[2 * layer + 1];
            for (int u = 0; u < H; u++) {
                float *dst = (float *)s->x[in_l + u];
                memcpy(dst, hp + (long)u * n + i0, sizeof(float) * bn);
                memset(dst + bn, 0, sizeof(float) * (nch * LANES - bn));
            }
            const float *b = bias ? bias + (long)layer * H * 4 : 0;
            for (int u = 0; u < H; u++) {
                const float *wu = w + (long)u * K * 4;
                for (int ch = 0; ch < nch; ch++) {
                    const long at = i0 + ch * LANES;
                    const long cnt = bn - ch * LANES < LANES ? bn - ch * LANES : LANES;
                    const int c0 = ch * NV;
                    vf acc[4][NV];
                    for (int q = 0; q < 4; q++) {
                        float b0 = b ? b[u * 4 + q] : 0.0f;
                        if (layer == 0 && role_tab) {
                            const int32_t *rl = s->rl + ch * LANES;
                            if (!s->uniform[ch]) {
                                for (int l = 0; l < LANES; l++)
                                    acc[q][l / V][l % V] = role_tab[(rl[l] * H + u) * 4 + q];
                                continue;
                            }
                            b0 = role_tab[(rl[0] * H + u) * 4 + q];
                        }
                        for (int j = 0; j < NV; j++) acc[q][j] = vf{} + b0;
                    }
                    for (int kk = 0; kk < K; kk++) {
                        const float *wk = wu + kk * 4;
                        for (int j = 0; j < NV; j++) {
                            const vf xk = s->x[kk][c0 + j];
                            acc[0][j] += wk[0] * xk;
                            acc[1][j] += wk[1] * xk;
                            acc[2][j] += wk[2] * xk;
                            acc[3][j] += wk[3] * xk;
                        }
                    }
                    vf cv[NV], hv[NV];
                    load(cv, cp + (long)u * n + at, cnt);
                    for (int j = 0; j < NV; j++) {
                        vf ig = vsigmoid(acc[0][j]), fg = vsigmoid(acc[1][j]);
                        vf gg = vtanh(acc[2][j]), og = vsigmoid(acc[3][j]);
                        cv[j] = ig * gg + fg * cv[j];
                        hv[j] = og * vtanh(cv[j]);
                        s->hcur[u][c0 + j] = hv[j];
                    }
                    store(cn + (long)u * n + at, cv, cnt);
                    store(hn + (long)u * n + at, hv, cnt);
                }
            }
            for (int u = 0; u < H; u++) memcpy(s->x[u], s->hcur[u], sizeof(vf) * nch * NV);
            w += (long)H * K * 4;
            in_l = H;
        }
        for (int ch = 0; ch < nch; ch++) {
            const long cnt = bn - ch * LANES < LANES ? bn - ch * LANES : LANES;
            vf y[NV];
            for (int j = 0; j < NV; j++) {
                y[j] = vf{} + scal[HEAD_B];
                for (int u = 0; u < H; u++) y[j] += head_w[u] * s->hcur[u][ch * NV + j];
                if (bounded) y[j] = vtanh(y[j]);
                y[j] = y[j] * scal[OUT_SCALE];
            }
            store(out + i0 + ch * LANES, y, cnt);
        }
    }
    free(s);
    return 0;
}

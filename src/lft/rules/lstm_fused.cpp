// The coordinate LSTM's no-grad step fused into one pass over the coordinates (lft.rules.lstm_fused).
//
// One vector of V coordinates (a tile) at a time goes through the whole step in registers: its
// input features from the gradient (updating the Adam moments), every LSTM layer and the
// head. Per hidden unit the four gate sums are accumulated in registers from the unit's inputs
// (features and previous h, K vectors) with the small weights broadcast from memory; nothing
// of the step but its state and outputs goes to memory. Every state row (hidden, n) is read and
// written in place, coordinate-contiguous (a tile is one unaligned load/store per row), with
// software prefetches a few tiles ahead on every row (46 streams on the default rule: the
// hardware prefetchers alone lose them). Units go in pairs, software-pipelined, so that the
// out-of-order core overlaps their long dependency chains. The default sizes (10 hidden
// units, 4 input features, 1 layer) are compiled as constants; any other runs the same code
// with run-time sizes. GCC vector extensions with the target's vector width (-march=native:
// AVX-512, AVX2, NEON, ...), an AVX-512 intrinsic only for clamping (vrangeps).
//
// On the target (Zen 4, 512-bit) the step is bound by the two FMA pipes: per unit 56 multiply-
// adds for the gate sums and about as many for the five transcendentals. sigmoid and tanh
// come from one exp/expm1 core (degree-6 polynomial, 1.3e-8 relative; 2^n built with integer
// operations) and are combined so that a unit needs three divisions, not five:
//   i g = sign(g) m_g / ((1 + e_i)(2 - m_g)),  f c_prev = c_prev / (1 + e_f),
//   o tanh(c) = sign(c) m_c / ((1 + e_o)(2 - m_c)),
// with e_x = exp(-x) and m_x = 1 - exp(-2|x|). Against double precision: sigmoid within 2.4
// ulp, tanh 2.5 ulp, i g 4.4 ulp; results equal the reference kernel's to float32 rounding,
// not bit for bit. Gate inputs are clamped (|x| <= 86 for exp(-x), 10 for tanh): a NaN in a
// gate sum does not propagate through it (as in the previous kernel).
//
// Built by lft.rules.lstm_fused at first use and called through ctypes (plain C ABI).

#include "lstm_fused_math.h"  // vector types, clamps, exp/expm1, sigmoid, tanh, log

struct Args {
    long n;
    int hidden, layers, n_feat, n_in;
    const int32_t *feats;
    const float *wpack, *bias, *role_tab, *head_w, *scal;
    int bounded;
};

// Where one tile reads and writes: the rows (state rows `stride` floats apart) and the tile's
// offset within them.
struct Io {
    const float *g, *theta, *m_in, *v_in;
    float *m_out, *v_out, *out;
    const float *const *hc_in;
    float *const *hc_out;
    long stride;
    long off;  // offset of the tile within every row above
};

// The features of one tile into x[0, n_in), updating the Adam moments.
static inline void features(const Args &a, const Io &io, vf *x) {
    const float *scal = a.scal;
    const long o = io.off;
    const vf gv = ld(io.g + o);
    PREF(io.g + o, 0);
    PREF(io.out + o, 1);
    int k = 0;
    for (int f = 0; f < a.n_feat; f++) {
        switch (a.feats[f]) {
        case RAW:
            x[k++] = gv * scal[RAW_SCALE];
            break;
        case LOGSIGN: {
            vf ab = vmax(vmax(gv, -gv), vf{} + scal[EXP_MP]);
            x[k] = vlog(ab) * scal[INV_P];
            x[k + 1] = vmin(vmax(gv * scal[EXP_P], vf{} - 1.0f), vf{} + 1.0f);
            k += 2;
            break;
        }
        case ADAM: {
            vf mv = ld(io.m_in + o), vv = ld(io.v_in + o);
            PREF(io.m_in + o, 0);
            PREF(io.v_in + o, 0);
            PREF(io.m_out + o, 1);
            PREF(io.v_out + o, 1);
            mv = mv + scal[B1W] * (gv - mv);
            vv = vv * scal[B2] + scal[ONE_M_B2] * (gv * gv);
            vf den = vv / scal[BC2] + scal[EPS2];
            vf r;  // 1 / sqrt: vectorised with -fno-math-errno
            for (int l = 0; l < V; l++) r[l] = 1.0f / __builtin_sqrtf(den[l]);
            x[k] = (mv * r) / scal[BC1];
            x[k + 1] = gv * r;
            st(io.m_out + o, mv);
            st(io.v_out + o, vv);
            k += 2;
            break;
        }
        case PARAM:
            PREF(io.theta + o, 0);
            x[k++] = ld(io.theta + o);
            break;
        default:  // ROLE: folded into the gate biases (role_tab)
            break;
        }
    }
}

// One layer's units on one tile. Its inputs: x (K vectors), biases b0 (hidden, 4), or per
// lane lb, or none; the state rows cp (read), cn and hn (written), s apart.
struct Layer {
    int K;
    const float *w, *b0;
    const vf *x, *lb;
    const float *cp;
    float *cn, *hn;
    long s;
};

// The gate sums of units u .. u+N-1: acc[gate][unit]
template <int N>
static inline void gate_sums(const Layer &l, int u, vf (*acc)[N]) {
    for (int q = 0; q < 4; q++)
        EACH acc[q][j] = l.lb ? l.lb[(u + j) * 4 + q]
                              : vf{} + (l.b0 ? l.b0[(u + j) * 4 + q] : 0.0f);
    for (int k = 0; k < l.K; k++)
        for (int q = 0; q < 4; q++)
            EACH acc[q][j] += l.w[((long)(u + j) * l.K + k) * 4 + q] * l.x[k];
}

// From the gate sums (i, f, g, o) of units u .. u+N-1: c = i g + f c_prev, stored, and
// 1 + exp(-o) for the second half
template <int N>
static inline void cell_c(const Layer &l, int u, vf (*acc)[N], vf *c, vf *eo1) {
    EACH {
        PREF(l.cp + (u + j) * l.s, 0);
        PREF(l.cn + (u + j) * l.s, 1);
        PREF(l.hn + (u + j) * l.s, 1);
    }
    vf ei[N], ef[N], mg[N];
    e_neg<N>(acc[0], ei);
    e_neg<N>(acc[1], ef);
    e_neg<N>(acc[3], eo1);
    m_expm1_m2abs<N>(acc[2], mg);
    EACH c[j] = with_sign_of(mg[j], acc[2][j]) / ((1.0f + ei[j]) * (2.0f - mg[j]))
                + ld(l.cp + (u + j) * l.s) / (1.0f + ef[j]);
    EACH st(l.cn + (u + j) * l.s, c[j]);
    EACH eo1[j] = eo1[j] + 1.0f;
}

// h = o tanh(c) of units u .. u+N-1, stored; to the head (last layer) or to hcur
template <int N>
static inline void cell_h(const Layer &l, int u, const vf *c, const vf *eo1, bool last,
                          const float *head_w, vf &y, vf *hcur) {
    vf mc[N];
    m_expm1_m2abs<N>(c, mc);
    EACH {
        const vf h = with_sign_of(mc[j], c[j]) / (eo1[j] * (2.0f - mc[j]));
        st(l.hn + (u + j) * l.s, h);
        if (last) y += head_w[u + j] * h;
        else hcur[u + j] = h;
    }
}

// One tile through every layer and the head. HT, NT: the hidden size and the first layer's
// input count as compile-time constants (0: read from a). rb: the tile's role row of role_tab
// (one role over the tile), or NULL with lane_bias holding per-lane layer-0 biases.
template <int HT, int NT, int LT>
static inline void tile(const Args &a, const Io &io, const float *rb, const vf *lane_bias) {
    const int H = HT ? HT : a.hidden;
    const int NIN = NT ? NT : a.n_in;
    const int L = LT ? LT : a.layers;
    const long o = io.off, s = io.stride;
    vf x[MAXIN + MAXH];
    features(a, io, x);
    int in_l = NIN;
    const float *w = a.wpack;
    vf y = vf{} + a.scal[HEAD_B];
    for (int layer = 0; layer < L; layer++) {
        const int K = in_l + H;
        const bool last = layer == L - 1;
        const float *hp = io.hc_in[2 * layer] + o, *cp = io.hc_in[2 * layer + 1] + o;
        float *hn = io.hc_out[2 * layer] + o, *cn = io.hc_out[2 * layer + 1] + o;
        for (int u = 0; u < H; u++) {
            PREF(hp + u * s, 0);
            x[in_l + u] = ld(hp + u * s);
        }
        const float *b = a.bias ? a.bias + (long)layer * H * 4 : 0;
        const float *b0 = layer == 0 && a.role_tab ? rb : b;  // per-lane biases if neither
        const vf *lb = layer == 0 && a.role_tab && !rb ? lane_bias : 0;
        vf hcur[MAXH];
        const Layer l = {K, w, b0, x, lb, cp, cn, hn, s};
        // units in pairs, software-pipelined: the next pair's gate sums (independent
        // multiply-adds) sit between this pair's c and its tanh(c) chain
        int u = 0;
        if (H >= 2) {
            vf acc[4][2], c[2], eo1[2];
            gate_sums<2>(l, 0, acc);
            for (; u + 2 <= H; u += 2) {
                cell_c<2>(l, u, acc, c, eo1);
                if (u + 4 <= H) gate_sums<2>(l, u + 2, acc);
                cell_h<2>(l, u, c, eo1, last, a.head_w, y, hcur);
            }
        }
        if (u < H) {  // an odd hidden size's last unit
            vf acc[4][1], c[1], eo1[1];
            gate_sums<1>(l, u, acc);
            cell_c<1>(l, u, acc, c, eo1);
            cell_h<1>(l, u, c, eo1, last, a.head_w, y, hcur);
        }
        if (!last)
            for (int u = 0; u < H; u++) x[u] = hcur[u];
        w += (long)H * K * 4;
        in_l = H;
    }
    if (a.bounded) y = vtanh(y);
    st(io.out + o, y * a.scal[OUT_SCALE]);
}

template <int HT, int NT, int LT>
static void run(const Args &a, const Io &main_io, const int32_t *role, long period) {
    const long n = a.n;
    const int H = a.hidden;
    vf lane_bias[MAXH * 4];
    long p = 0;  // role index of coordinate i
    const float *rb = 0;
    auto roles = [&](long cnt) {  // the tile's role bias: rb, or lane_bias when mixed
        if (!a.role_tab) return;
        const int32_t r0 = role[p];
        bool uniform = true;
        if (p + V <= period) {
            vi rv = *(const viu *)(role + p);
            for (int l = 1; l < cnt; l++) uniform &= rv[l] == r0;
        } else {
            long q = p;
            for (int l = 0; l < cnt; l++) {
                uniform &= role[q] == r0;
                if (++q == period) q = 0;
            }
        }
        if (uniform) {
            rb = a.role_tab + (long)r0 * H * 4;
        } else {
            rb = 0;
            long q = p;
            for (int l = 0; l < V; l++) {
                const float *t = a.role_tab + (long)role[q] * H * 4;
                for (int j = 0; j < H * 4; j++) lane_bias[j][l] = t[j];
                if (l + 1 < cnt && ++q == period) q = 0;
            }
        }
        p += cnt;
        while (p >= period) p -= period;
    };
    Io io = main_io;
    long i = 0;
    for (; i + V <= n; i += V) {
        roles(V);
        io.off = i;
        tile<HT, NT, LT>(a, io, rb, lane_bias);
    }
    if (i == n) return;
    // the tail: copied into padded rows of one tile, run, copied back
    const long cnt = n - i;
    const int L = a.layers;
    float *buf = (float *)calloc((size_t)(8 + 4 * L * H) * V, sizeof(float));
    if (!buf) return;
    float *in[7], *hcb = buf + 8 * V;
    const float *src[4] = {main_io.g, main_io.theta, main_io.m_in, main_io.v_in};
    for (int k = 0; k < 7; k++) in[k] = buf + k * V;
    for (int k = 0; k < 4; k++)
        if (src[k]) memcpy(in[k], src[k] + i, sizeof(float) * cnt);
    const float *hin[2 * 64];
    float *hout[2 * 64];
    float *hin_w[2 * 64];
    for (int j = 0; j < 2 * L && j < 128; j++) {
        hin_w[j] = hcb + (long)j * H * V;
        hout[j] = hcb + (long)(2 * L + j) * H * V;
        for (int u = 0; u < H; u++)
            memcpy(hin_w[j] + u * V, main_io.hc_in[j] + u * main_io.stride + i,
                   sizeof(float) * cnt);
        hin[j] = hin_w[j];
    }
    Io t = {in[0], in[1], in[2], in[3], in[4], in[5], in[6], hin, hout, V, 0};
    roles(cnt);
    tile<HT, NT, LT>(a, t, rb, lane_bias);
    if (main_io.m_out) memcpy(main_io.m_out + i, in[4], sizeof(float) * cnt);
    if (main_io.v_out) memcpy(main_io.v_out + i, in[5], sizeof(float) * cnt);
    memcpy(main_io.out + i, in[6], sizeof(float) * cnt);
    for (int j = 0; j < 2 * L; j++)
        for (int u = 0; u < H; u++)
            memcpy(main_io.hc_out[j] + u * main_io.stride + i, hout[j] + u * V,
                   sizeof(float) * cnt);
    free(buf);
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
    const float *head_w, const float *head_b, int bounded, const float *scal_in,
    const float *t_step,     // the Adam step counter after this step (float32), or NULL
    float *out) {
    if (hidden < 1 || hidden > MAXH || layers < 1 || layers > 64 || n_feat > MAXIN) return -1;
    int n_in = 0;
    for (int f = 0; f < n_feat; f++) n_in += (feats[f] == LOGSIGN || feats[f] == ADAM) ? 2 : 1;
    if (n_in > MAXIN) return -2;
    if (role_tab && (!role || period < 1)) return -3;
    float scal[N_SCAL];
    memcpy(scal, scal_in, sizeof scal);
    // the bias corrections as torch computes 1 - beta ** t in float32 (glibc's powf)
    scal[BC1] = t_step ? 1.0f - powf(0.9f, *t_step) : 1.0f;
    scal[BC2] = t_step ? 1.0f - powf(0.999f, *t_step) : 1.0f;
    scal[HEAD_B] = head_b ? *head_b : 0.0f;
    Args a = {n, hidden, layers, n_feat, n_in, feats, wpack, bias, role_tab, head_w, scal,
              bounded};
    Io io = {g, theta, m_in, v_in, m_out, v_out, out, hc_in, hc_out, n, 0};
    if (hidden == 10 && n_in == 4 && layers == 1)  // the default rule's sizes, unrolled
        run<10, 4, 1>(a, io, role, period);
    else
        run<0, 0, 0>(a, io, role, period);
    return 0;
}

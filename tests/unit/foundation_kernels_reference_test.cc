// Proves the CPU reference kernels compute what their headers say, against independent naive
// loops in double on seeded random inputs: RoPE frequencies (default and llama3, closed form),
// the rotate-half rotation (pairs (i, i+d/2), norm preserving, identity at position 0,
// relative-position property), RMSNorm (incl. aliasing and the fused residual add), SwiGLU,
// Linear (x·Wᵀ with an output row stride), and causal / selected attention over a paged KV
// with a scrambled block table and GQA head mapping h -> h / (Hq/Hkv).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/linear_reference.h"
#include "kernels/paged_kv.h"
#include "kernels/rms_norm_reference.h"
#include "kernels/rope.h"
#include "kernels/swiglu_reference.h"

namespace dsinfer {
namespace {

std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ---------------------------------------------------------------- RoPE frequencies

TEST(RopeTest, DefaultInvFreqMatchesClosedForm) {
  for (double theta : {10000.0, 500000.0, 1e6}) {
    for (int d : {16, 64, 128, 96}) {
      RopeParams p;
      p.theta = theta;
      std::vector<float> f = ComputeRopeInvFreq(p, d);
      ASSERT_EQ(f.size(), static_cast<size_t>(d / 2));
      for (int i = 0; i < d / 2; ++i) {
        const double expected = std::pow(theta, -2.0 * i / d);
        EXPECT_NEAR(f[i], expected, 2e-6 * expected) << "theta " << theta << " d " << d << " i " << i;
      }
      EXPECT_EQ(f[0], 1.0f);
    }
  }
}

// transformers' _compute_llama3_parameters, in double.
double Llama3InvFreq(double f, const RopeParams& p) {
  const double old_len = static_cast<double>(p.original_max_position_embeddings);
  const double wavelen = 2 * M_PI / f;
  const double low_freq_wavelen = old_len / p.low_freq_factor;
  const double high_freq_wavelen = old_len / p.high_freq_factor;
  if (wavelen < high_freq_wavelen) return f;
  if (wavelen > low_freq_wavelen) return f / p.factor;
  const double smooth = (old_len / wavelen - p.low_freq_factor) /
                        (p.high_freq_factor - p.low_freq_factor);
  return (1 - smooth) * f / p.factor + smooth * f;
}

TEST(RopeTest, Llama3InvFreqMatchesClosedFormInAllThreeBands) {
  struct Case {
    double theta, factor, low, high;
    int64_t old_len;
    int d;
  };
  for (const Case& c : {Case{500000.0, 8.0, 1.0, 4.0, 8192, 128},
                        Case{500000.0, 8.0, 1.0, 4.0, 64, 128},  // the golden model's values
                        Case{10000.0, 32.0, 2.0, 8.0, 1024, 64}}) {
    RopeParams p;
    p.type = RopeParams::Type::kLlama3;
    p.theta = c.theta;
    p.factor = c.factor;
    p.low_freq_factor = c.low;
    p.high_freq_factor = c.high;
    p.original_max_position_embeddings = c.old_len;
    ASSERT_TRUE(p.Validate().ok());
    RopeParams plain = p;
    plain.type = RopeParams::Type::kDefault;
    const std::vector<float> base = ComputeRopeInvFreq(plain, c.d);
    const std::vector<float> f = ComputeRopeInvFreq(p, c.d);
    ASSERT_EQ(f.size(), base.size());
    int high = 0, low = 0, medium = 0;
    for (int i = 0; i < c.d / 2; ++i) {
      const double expected = Llama3InvFreq(base[i], p);
      EXPECT_NEAR(f[i], expected, 1e-5 * expected) << "i " << i;
      const double wavelen = 2 * M_PI / base[i];
      if (wavelen < c.old_len / c.high) {
        ++high;
        EXPECT_EQ(f[i], base[i]);  // high frequencies untouched
      } else if (wavelen > c.old_len / c.low) {
        ++low;
      } else {
        ++medium;
      }
    }
    EXPECT_GT(high, 0);
    EXPECT_GT(low, 0);
    if (c.old_len == 8192) {
      EXPECT_GT(medium, 0);
    }
    // Frequencies stay monotonically non-increasing.
    for (size_t i = 1; i < f.size(); ++i) EXPECT_LE(f[i], f[i - 1]);
  }
}

TEST(RopeTest, ParamsValidate) {
  RopeParams p;
  EXPECT_TRUE(p.Validate().ok());
  p.theta = 0;
  EXPECT_FALSE(p.Validate().ok());
  p = RopeParams();
  p.type = RopeParams::Type::kLlama3;
  EXPECT_TRUE(p.Validate().ok());
  p.high_freq_factor = p.low_freq_factor;
  EXPECT_FALSE(p.Validate().ok());
  p = RopeParams();
  p.type = RopeParams::Type::kLlama3;
  p.factor = 0;
  EXPECT_FALSE(p.Validate().ok());
  p = RopeParams();
  p.type = RopeParams::Type::kLlama3;
  p.original_max_position_embeddings = 0;
  EXPECT_FALSE(p.Validate().ok());
}

// ---------------------------------------------------------------- RoPE rotation

TEST(RopeTest, RotatesRotateHalfPairsAgainstNaive) {
  const int heads = 3, d = 64, tokens = 7;
  const int64_t stride = heads * d + 5;  // padding between tokens must stay untouched
  RopeParams p;
  p.theta = 10000.0;
  const std::vector<float> inv_freq = ComputeRopeInvFreq(p, d);
  std::vector<float> x = RandomVector(tokens * stride, 11);
  const std::vector<float> orig = x;
  const std::vector<int32_t> positions = {0, 1, 5, 17, 100, 1023, 4095};
  RopeReference(x.data(), tokens, stride, heads, d, positions.data(), inv_freq.data());
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const float* o = &orig[t * stride + h * d];
      const float* r = &x[t * stride + h * d];
      double norm_in = 0, norm_out = 0;
      for (int i = 0; i < d / 2; ++i) {
        const double angle = static_cast<double>(static_cast<float>(positions[t]) * inv_freq[i]);
        const double a = o[i], b = o[i + d / 2];
        EXPECT_NEAR(r[i], a * std::cos(angle) - b * std::sin(angle), 1e-5) << t << " " << h << " " << i;
        EXPECT_NEAR(r[i + d / 2], b * std::cos(angle) + a * std::sin(angle), 1e-5);
        // Each pair keeps its length.
        EXPECT_NEAR(std::hypot(r[i], r[i + d / 2]), std::hypot(a, b), 1e-5);
        norm_in += a * a + b * b;
        norm_out += static_cast<double>(r[i]) * r[i] + static_cast<double>(r[i + d / 2]) * r[i + d / 2];
      }
      EXPECT_NEAR(norm_out, norm_in, 1e-4 * norm_in);
      if (positions[t] == 0) {
        for (int i = 0; i < d; ++i) EXPECT_EQ(r[i], o[i]) << "position 0 must be the identity";
      }
    }
    for (int64_t pad = heads * d; pad < stride; ++pad) {
      EXPECT_EQ(x[t * stride + pad], orig[t * stride + pad]);
    }
  }
}

TEST(RopeTest, ScoresDependOnlyOnRelativePosition) {
  // q·k after rotating q at m and k at n equals that at m+s, n+s (the point of RoPE).
  const int d = 128;
  RopeParams p;
  p.type = RopeParams::Type::kLlama3;
  p.theta = 500000.0;
  const std::vector<float> inv_freq = ComputeRopeInvFreq(p, d);
  const std::vector<float> q = RandomVector(d, 21), k = RandomVector(d, 22);
  auto score = [&](int32_t m, int32_t n) {
    std::vector<float> qq = q, kk = k;
    RopeReference(qq.data(), 1, d, 1, d, &m, inv_freq.data());
    RopeReference(kk.data(), 1, d, 1, d, &n, inv_freq.data());
    double s = 0;
    for (int i = 0; i < d; ++i) s += static_cast<double>(qq[i]) * kk[i];
    return s;
  };
  for (auto [m, n] : {std::pair<int, int>{9, 3}, {40, 40}, {100, 7}}) {
    const double s0 = score(m, n);
    for (int shift : {1, 13, 200}) EXPECT_NEAR(score(m + shift, n + shift), s0, 5e-3) << m << " " << n;
  }
}

// ---------------------------------------------------------------- RMSNorm / SwiGLU / Linear

void NaiveRmsNorm(const std::vector<float>& x, const std::vector<float>& w, int64_t rows,
                  int64_t dim, float eps, std::vector<double>& out) {
  out.resize(rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
}

TEST(RmsNormTest, MatchesNaiveAndAllowsAliasing) {
  for (int64_t dim : {1, 7, 256, 1000}) {
    const int64_t rows = 5;
    const float eps = 1e-5f;
    std::vector<float> x = RandomVector(rows * dim, 31 + dim, 2.0f);
    std::vector<float> w = RandomVector(dim, 32 + dim);
    for (float& v : w) v += 1.0f;
    std::vector<double> expected;
    NaiveRmsNorm(x, w, rows, dim, eps, expected);
    std::vector<float> out(rows * dim);
    RmsNormReference(x.data(), w.data(), rows, dim, eps, out.data());
    for (int64_t i = 0; i < rows * dim; ++i) {
      EXPECT_NEAR(out[i], expected[i], 1e-5 * (1 + std::fabs(expected[i]))) << dim << " " << i;
    }
    RmsNormReference(x.data(), w.data(), rows, dim, eps, x.data());  // in place
    EXPECT_EQ(x, out);
  }
}

TEST(RmsNormTest, EpsMattersForTinyInputs) {
  const int64_t dim = 8;
  std::vector<float> x = RandomVector(dim, 41, 1e-4f), w(dim, 1.0f), out(dim);
  std::vector<double> expected;
  NaiveRmsNorm(x, w, 1, dim, 1e-2f, expected);
  RmsNormReference(x.data(), w.data(), 1, dim, 1e-2f, out.data());
  for (int64_t i = 0; i < dim; ++i) EXPECT_NEAR(out[i], expected[i], 1e-9);
}

TEST(RmsNormTest, AddRmsNormUpdatesResidual) {
  const int64_t rows = 4, dim = 96;
  std::vector<float> residual = RandomVector(rows * dim, 51), delta = RandomVector(rows * dim, 52);
  std::vector<float> w = RandomVector(dim, 53);
  std::vector<float> sum(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) sum[i] = residual[i] + delta[i];
  std::vector<float> out(rows * dim), expected(rows * dim);
  AddRmsNormReference(residual.data(), delta.data(), w.data(), rows, dim, 1e-6f, out.data());
  EXPECT_EQ(residual, sum);
  RmsNormReference(sum.data(), w.data(), rows, dim, 1e-6f, expected.data());
  EXPECT_EQ(out, expected);
}

TEST(SwiGluTest, MatchesNaive) {
  const int64_t rows = 6, inter = 77;
  std::vector<float> gate_up = RandomVector(rows * 2 * inter, 61, 4.0f);
  gate_up[0] = -100.0f;  // exp overflow side: silu -> -0
  gate_up[1] = 100.0f;
  std::vector<float> out(rows * inter);
  SwiGluReference(gate_up.data(), rows, inter, out.data());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      const double g = gate_up[r * 2 * inter + i], u = gate_up[r * 2 * inter + inter + i];
      const double expected = g / (1 + std::exp(-g)) * u;
      EXPECT_NEAR(out[r * inter + i], expected, 1e-5 * (1 + std::fabs(expected))) << r << " " << i;
    }
  }
  EXPECT_TRUE(std::isfinite(out[0]));
}

TEST(LinearTest, MatchesNaiveWithOutputStride) {
  struct Shape {
    int64_t rows, in, out;
  };
  for (const Shape& s : {Shape{1, 1, 1}, Shape{3, 17, 5}, Shape{9, 64, 33}, Shape{2, 300, 130}}) {
    const std::vector<float> x = RandomVector(s.rows * s.in, 71 + s.in);
    const std::vector<float> w = RandomVector(s.out * s.in, 72 + s.out);
    const int64_t stride = s.out + 3;
    std::vector<float> y(s.rows * stride, 12345.0f);
    LinearReference(x.data(), s.rows, s.in, w.data(), s.out, y.data(), stride);
    for (int64_t r = 0; r < s.rows; ++r) {
      for (int64_t o = 0; o < s.out; ++o) {
        double expected = 0, mag = 0;
        for (int64_t i = 0; i < s.in; ++i) {
          expected += static_cast<double>(x[r * s.in + i]) * w[o * s.in + i];
          mag += std::fabs(static_cast<double>(x[r * s.in + i]) * w[o * s.in + i]);
        }
        EXPECT_NEAR(y[r * stride + o], expected, 1e-5 * (1 + mag)) << r << " " << o;
      }
      for (int64_t pad = s.out; pad < stride; ++pad) EXPECT_EQ(y[r * stride + pad], 12345.0f);
    }
  }
}

TEST(LinearTest, ZeroRowsIsANoOp) {
  const std::vector<float> w = RandomVector(12, 81);
  std::vector<float> y(4, 7.0f);
  LinearReference(nullptr, 0, 3, w.data(), 4, y.data(), 4);
  EXPECT_EQ(y, std::vector<float>(4, 7.0f));
}

// ---------------------------------------------------------------- attention

// A paged KV holding `tokens` random K/V rows, with the blocks in scrambled order; also keeps
// dense copies k[t][h][d], v[t][h][d] for the naive computation.
struct PagedKv {
  int block_tokens, kv_heads, head_dim;
  int64_t tokens;
  std::vector<float> k_pool, v_pool, k_dense, v_dense;
  std::vector<int32_t> table;

  PagedKv(int64_t tokens_in, int block_tokens_in, int kv_heads_in, int head_dim_in, uint32_t seed)
      : block_tokens(block_tokens_in), kv_heads(kv_heads_in), head_dim(head_dim_in), tokens(tokens_in) {
    const int64_t blocks = (tokens + block_tokens - 1) / block_tokens;
    const int64_t pool_blocks = blocks + 3;  // unused blocks hold garbage
    std::mt19937 rng(seed);
    std::vector<int32_t> perm(pool_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    table.assign(perm.begin(), perm.begin() + blocks);
    const int64_t row = static_cast<int64_t>(kv_heads) * head_dim;
    k_pool = RandomVector(pool_blocks * block_tokens * row, seed + 1, 1e3f);
    v_pool = RandomVector(pool_blocks * block_tokens * row, seed + 2, 1e3f);
    k_dense = RandomVector(tokens * row, seed + 3);
    v_dense = RandomVector(tokens * row, seed + 4);
    PagedKvView<float> w = MutableView();
    for (int64_t t = 0; t < tokens; ++t) {
      for (int h = 0; h < kv_heads; ++h) {
        std::copy_n(&k_dense[(t * kv_heads + h) * head_dim], head_dim, w.KRow(t, h));
        std::copy_n(&v_dense[(t * kv_heads + h) * head_dim], head_dim, w.VRow(t, h));
      }
    }
  }
  PagedKvView<float> MutableView() {
    return PagedKvView<float>{k_pool.data(), v_pool.data(), table.data(), block_tokens, kv_heads,
                              head_dim};
  }
  PagedKvView<const float> View() const {
    return PagedKvView<const float>{k_pool.data(), v_pool.data(), table.data(), block_tokens,
                                    kv_heads, head_dim};
  }
  const float* K(int64_t t, int h) const { return &k_dense[(t * kv_heads + h) * head_dim]; }
  const float* V(int64_t t, int h) const { return &v_dense[(t * kv_heads + h) * head_dim]; }
};

// Straightforward attention of one query head over the token list `set`.
std::vector<double> NaiveHead(const float* q, const PagedKv& kv, int kv_head,
                              const std::vector<int32_t>& set, double scale) {
  std::vector<double> s(set.size());
  double mx = -INFINITY;
  for (size_t j = 0; j < set.size(); ++j) {
    double dot = 0;
    for (int d = 0; d < kv.head_dim; ++d) dot += static_cast<double>(q[d]) * kv.K(set[j], kv_head)[d];
    s[j] = dot * scale;
    mx = std::max(mx, s[j]);
  }
  double z = 0;
  for (double& v : s) z += (v = std::exp(v - mx));
  std::vector<double> out(kv.head_dim, 0.0);
  for (size_t j = 0; j < set.size(); ++j) {
    for (int d = 0; d < kv.head_dim; ++d) out[d] += s[j] / z * kv.V(set[j], kv_head)[d];
  }
  return out;
}

struct AttnCase {
  int heads_q, heads_kv, head_dim, block_tokens;
  int64_t tokens;
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, CausalMatchesNaivePerHead) {
  const AttnCase c = GetParam();
  const PagedKv kv(c.tokens, c.block_tokens, c.heads_kv, c.head_dim, 1000 + c.heads_q);
  AttentionShape shape{c.heads_q, c.heads_kv, c.head_dim,
                       static_cast<float>(1.0 / std::sqrt(c.head_dim))};
  // Queries at a mix of positions (first, last, odd, block boundaries), with a padded stride.
  std::vector<int32_t> positions = {0, static_cast<int32_t>(c.tokens - 1),
                                    static_cast<int32_t>(c.tokens / 2), c.block_tokens - 1,
                                    static_cast<int32_t>(std::min<int64_t>(c.block_tokens, c.tokens - 1))};
  const int64_t n = static_cast<int64_t>(positions.size());
  const int64_t q_stride = c.heads_q * c.head_dim + 3, out_stride = c.heads_q * c.head_dim + 1;
  const std::vector<float> q = RandomVector(n * q_stride, 2000 + c.head_dim, 2.0f);
  std::vector<float> out(n * out_stride, -7.0f);
  CausalAttentionReference(q.data(), q_stride, positions.data(), n, kv.View(), shape, out.data(),
                           out_stride);
  const int group = c.heads_q / c.heads_kv;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> set(positions[i] + 1);
    std::iota(set.begin(), set.end(), 0);
    for (int h = 0; h < c.heads_q; ++h) {
      const std::vector<double> expected =
          NaiveHead(&q[i * q_stride + h * c.head_dim], kv, h / group, set, shape.scale);
      for (int d = 0; d < c.head_dim; ++d) {
        EXPECT_NEAR(out[i * out_stride + h * c.head_dim + d], expected[d], 1e-5)
            << "query " << i << " head " << h << " dim " << d;
      }
    }
    EXPECT_EQ(out[i * out_stride + out_stride - 1], -7.0f);  // padding untouched
    if (positions[i] == 0) {
      // One token attended: the output is exactly that token's V.
      for (int h = 0; h < c.heads_q; ++h) {
        for (int d = 0; d < c.head_dim; ++d) {
          EXPECT_FLOAT_EQ(out[i * out_stride + h * c.head_dim + d], kv.V(0, h / group)[d]);
        }
      }
    }
  }
}

// A query at a negative position is outside the call: its output row stays as it was, and the
// others are those of a call without it.
TEST_P(AttentionTest, CausalLeavesRowsAtNegativePositions) {
  const AttnCase c = GetParam();
  const PagedKv kv(c.tokens, c.block_tokens, c.heads_kv, c.head_dim, 5000 + c.heads_q);
  AttentionShape shape{c.heads_q, c.heads_kv, c.head_dim,
                       static_cast<float>(1.0 / std::sqrt(c.head_dim))};
  const std::vector<int32_t> positions = {static_cast<int32_t>(c.tokens - 1), -1,
                                          static_cast<int32_t>(c.tokens / 2)};
  const int64_t width = c.heads_q * c.head_dim;
  const std::vector<float> q = RandomVector(3 * width, 6000 + c.head_dim, 2.0f);
  std::vector<float> out(3 * width, -7.0f);
  CausalAttentionReference(q.data(), width, positions.data(), 3, kv.View(), shape, out.data(),
                           width);
  for (int64_t i : {0, 2}) {
    std::vector<float> alone(width, 0.0f);
    CausalAttentionReference(q.data() + i * width, width, &positions[i], 1, kv.View(), shape,
                             alone.data(), width);
    for (int64_t e = 0; e < width; ++e) EXPECT_EQ(out[i * width + e], alone[e]) << i << " " << e;
  }
  for (int64_t e = 0; e < width; ++e) EXPECT_EQ(out[width + e], -7.0f) << e;
}

TEST_P(AttentionTest, SelectedWithFullSetEqualsCausalAndSubsetMatchesNaive) {
  const AttnCase c = GetParam();
  const PagedKv kv(c.tokens, c.block_tokens, c.heads_kv, c.head_dim, 3000 + c.heads_kv);
  AttentionShape shape{c.heads_q, c.heads_kv, c.head_dim,
                       static_cast<float>(1.0 / std::sqrt(c.head_dim))};
  const std::vector<float> q = RandomVector(c.heads_q * c.head_dim, 4000, 2.0f);
  const int32_t pos = static_cast<int32_t>(c.tokens - 1);
  std::vector<float> causal(c.heads_q * c.head_dim), selected(c.heads_q * c.head_dim);
  CausalAttentionReference(q.data(), 0, &pos, 1, kv.View(), shape, causal.data(), 0);

  std::vector<int32_t> full(c.tokens);
  std::iota(full.begin(), full.end(), 0);
  std::vector<const int32_t*> indices(c.heads_kv, full.data());
  std::vector<int64_t> counts(c.heads_kv, c.tokens);
  SelectedAttentionReference(q.data(), kv.View(), shape, indices.data(), counts.data(),
                             selected.data());
  for (size_t i = 0; i < causal.size(); ++i) EXPECT_NEAR(selected[i], causal[i], 1e-6) << i;

  // A different random subset per KV head (the Double Sparsity case), in shuffled order.
  std::mt19937 rng(5000 + c.tokens);
  std::vector<std::vector<int32_t>> sets(c.heads_kv);
  for (int h = 0; h < c.heads_kv; ++h) {
    sets[h] = full;
    std::shuffle(sets[h].begin(), sets[h].end(), rng);
    sets[h].resize(std::max<int64_t>(1, c.tokens / (h + 2)));
    indices[h] = sets[h].data();
    counts[h] = static_cast<int64_t>(sets[h].size());
  }
  SelectedAttentionReference(q.data(), kv.View(), shape, indices.data(), counts.data(),
                             selected.data());
  const int group = c.heads_q / c.heads_kv;
  for (int h = 0; h < c.heads_q; ++h) {
    const std::vector<double> expected =
        NaiveHead(&q[h * c.head_dim], kv, h / group, sets[h / group], shape.scale);
    for (int d = 0; d < c.head_dim; ++d) {
      EXPECT_NEAR(selected[h * c.head_dim + d], expected[d], 1e-5) << h << " " << d;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnCase{4, 4, 16, 4, 13},   // MHA
                                           AttnCase{8, 2, 32, 16, 40},  // GQA 4:1
                                           AttnCase{6, 3, 64, 5, 23},   // GQA 2:1, odd block
                                           AttnCase{4, 1, 128, 16, 33}, // MQA
                                           AttnCase{2, 2, 8, 1, 9}));   // 1-token blocks

TEST(AttentionTest, GqaHeadsSharingAKvHeadDifferOnlyThroughQ) {
  // Two query heads mapped to the same KV head with the same q give the same output; the
  // mapping must be h / group (consecutive heads share), not h % heads_kv.
  const int heads_q = 4, heads_kv = 2, d = 16;
  const PagedKv kv(10, 4, heads_kv, d, 77);
  std::vector<float> q = RandomVector(heads_q * d, 78);
  std::copy_n(&q[0], d, &q[d]);  // heads 0 and 1 identical: both read KV head 0
  const int32_t pos = 9;
  std::vector<float> out(heads_q * d);
  AttentionShape shape{heads_q, heads_kv, d, 0.25f};
  CausalAttentionReference(q.data(), heads_q * d, &pos, 1, kv.View(), shape, out.data(), heads_q * d);
  for (int i = 0; i < d; ++i) EXPECT_EQ(out[i], out[d + i]);
  std::copy_n(&q[0], d, &q[2 * d]);  // head 2 reads KV head 1: different result
  CausalAttentionReference(q.data(), heads_q * d, &pos, 1, kv.View(), shape, out.data(), heads_q * d);
  double diff = 0;
  for (int i = 0; i < d; ++i) diff += std::fabs(out[i] - out[2 * d + i]);
  EXPECT_GT(diff, 1e-3);
}

}  // namespace
}  // namespace dsinfer

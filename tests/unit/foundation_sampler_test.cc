// Proves the sampler draws from the distribution transformers' logits processors define:
// Distribution() matches hand-computed probabilities for small logit vectors under greedy,
// temperature, top-k, top-p, min-p, repetition penalty and their combinations (top-p and
// min-p act on the probabilities renormalised after the earlier filters), and matches an
// independent reference on a random 1000-token vocabulary; Sample() follows Distribution()
// by a chi-square test (20000 draws, fixed seeds, p = 0.001 threshold), never draws a
// filtered token, and is reproducible per seed; Validate() names each bad field.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

SamplingParams Params(float temperature, int top_k = 0, float top_p = 1.0f, float min_p = 0.0f,
                      float repetition_penalty = 1.0f, uint64_t seed = 1) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repetition_penalty = repetition_penalty;
  p.seed = seed;
  return p;
}

// Logits whose softmax (T = 1) is exactly `probs` up to rounding.
std::vector<float> LogitsFor(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p) + 3.0));
  return l;
}

void ExpectDistribution(const std::vector<double>& got, const std::vector<double>& expected,
                        const std::string& what) {
  ASSERT_EQ(got.size(), expected.size()) << what;
  double sum = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], expected[i], 1e-6) << what << " token " << i;
    if (expected[i] == 0.0) {
      EXPECT_EQ(got[i], 0.0) << what << " token " << i;
    }
    sum += got[i];
  }
  EXPECT_NEAR(sum, 1.0, 1e-9) << what;
}

TEST(SamplerTest, GreedyIsArgmaxLowestIdOnTies) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler s(Params(0.0f));
  ExpectDistribution(s.Distribution(logits, {}), {0, 1, 0, 0, 0}, "greedy");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.Sample(logits, {}), 1);
  EXPECT_EQ(ArgMax(logits), 1);
  EXPECT_EQ(ArgMax(std::vector<float>{-5.0f}), 0);
  EXPECT_EQ(ArgMax(std::vector<float>{-INFINITY, -3.0f, -3.0f}), 1);
  // A NaN never wins, and one at index 0 is never beaten (every comparison with it is false).
  EXPECT_EQ(ArgMax(std::vector<float>{1.0f, NAN, 4.0f, NAN}), 2);
  EXPECT_EQ(ArgMax(std::vector<float>{NAN, 2.0f, 7.0f}), 0);
  EXPECT_EQ(ArgMax(std::vector<float>{}), 0);
}

// NextToken: a backend's row summary (argmax, log Σ exp) stands in for the host scan only for a
// greedy sampler; without one, or with a sampled or penalised request, the host decides.
TEST(SamplerTest, NextTokenUsesTheBackendsRowSummaryOnlyWhenGreedy) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler greedy(Params(0.0f));
  const auto [t0, lp0] = NextToken(greedy, logits, {}, nullptr);
  EXPECT_EQ(t0, 1);
  EXPECT_DOUBLE_EQ(lp0, LogProbability(logits, 1));
  // The summary's argmax and log Σ exp are used as given (a backend's, here a marker value).
  const LogitRowStat stat{4, 10.0f};
  const auto [t1, lp1] = NextToken(greedy, logits, {}, &stat);
  EXPECT_EQ(t1, 4);
  EXPECT_DOUBLE_EQ(lp1, static_cast<double>(logits[4]) - 10.0);
  // An argmax outside the row is not trusted.
  const LogitRowStat bad{99, 10.0f};
  EXPECT_EQ(NextToken(greedy, logits, {}, &bad).first, 1);
  // A repetition penalty or a temperature: the host sampler picks the token.
  SamplingParams penalised = Params(0.0f);
  penalised.repetition_penalty = 2.0f;
  Sampler p(penalised);
  const std::vector<int32_t> history = {1};
  EXPECT_EQ(NextToken(p, logits, history, &stat).first, 3);
  Sampler hot(Params(1.0f));
  Sampler hot_twin(Params(1.0f));
  EXPECT_EQ(NextToken(hot, logits, {}, &stat).first, hot_twin.Sample(logits, {}));
}

TEST(SamplerTest, TemperatureScalesSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.0f, -1.0f};
  for (float t : {1.0f, 0.5f, 2.0f, 0.1f}) {
    std::vector<double> expected(logits.size());
    double z = 0;
    for (size_t i = 0; i < logits.size(); ++i) z += expected[i] = std::exp(logits[i] / t);
    for (double& e : expected) e /= z;
    ExpectDistribution(Sampler(Params(t)).Distribution(logits, {}), expected,
                       "T=" + std::to_string(t));
  }
  // Hand-computed: logits {0, ln 3} at T = 1 -> {1/4, 3/4}; at T = 0.5 -> {1/10, 9/10}.
  const std::vector<float> two = {0.0f, static_cast<float>(std::log(3.0))};
  ExpectDistribution(Sampler(Params(1.0f)).Distribution(two, {}), {0.25, 0.75}, "ln3 T=1");
  ExpectDistribution(Sampler(Params(0.5f)).Distribution(two, {}), {0.1, 0.9}, "ln3 T=0.5");
}

TEST(SamplerTest, TopKKeepsTheKMostLikely) {
  const std::vector<float> logits = LogitsFor({0.1, 0.4, 0.2, 0.3});
  ExpectDistribution(Sampler(Params(1.0f, 1)).Distribution(logits, {}), {0, 1, 0, 0}, "k=1");
  ExpectDistribution(Sampler(Params(1.0f, 2)).Distribution(logits, {}), {0, 4.0 / 7, 0, 3.0 / 7},
                     "k=2");
  ExpectDistribution(Sampler(Params(1.0f, 3)).Distribution(logits, {}),
                     {0, 4.0 / 9, 2.0 / 9, 3.0 / 9}, "k=3");
  ExpectDistribution(Sampler(Params(1.0f, 100)).Distribution(logits, {}), {0.1, 0.4, 0.2, 0.3},
                     "k>vocab");
}

TEST(SamplerTest, TopPKeepsSmallestPrefixReachingP) {
  const std::vector<float> logits = LogitsFor({0.15, 0.5, 0.1, 0.25});
  // Sorted: 0.5 (1), 0.25 (3), 0.15 (0), 0.1 (2).
  ExpectDistribution(Sampler(Params(1.0f, 0, 0.45f)).Distribution(logits, {}), {0, 1, 0, 0},
                     "p=0.45");
  ExpectDistribution(Sampler(Params(1.0f, 0, 0.7f)).Distribution(logits, {}),
                     {0, 2.0 / 3, 0, 1.0 / 3}, "p=0.7");
  ExpectDistribution(Sampler(Params(1.0f, 0, 0.8f)).Distribution(logits, {}),
                     {0.15 / 0.9, 0.5 / 0.9, 0, 0.25 / 0.9}, "p=0.8");
  ExpectDistribution(Sampler(Params(1.0f, 0, 0.95f)).Distribution(logits, {}),
                     {0.15, 0.5, 0.1, 0.25}, "p=0.95");
  ExpectDistribution(Sampler(Params(1.0f, 0, 0.01f)).Distribution(logits, {}), {0, 1, 0, 0},
                     "p tiny keeps one");
}

TEST(SamplerTest, MinPKeepsTokensAboveFractionOfTop) {
  const std::vector<float> logits = LogitsFor({0.15, 0.5, 0.1, 0.25});
  // Threshold 0.4 * 0.5 = 0.2: keeps 0.5 and 0.25.
  ExpectDistribution(Sampler(Params(1.0f, 0, 1.0f, 0.4f)).Distribution(logits, {}),
                     {0, 2.0 / 3, 0, 1.0 / 3}, "min_p=0.4");
  // Threshold 0.25 * 0.5 = 0.125: keeps 0.5, 0.25, 0.15.
  ExpectDistribution(Sampler(Params(1.0f, 0, 1.0f, 0.25f)).Distribution(logits, {}),
                     {0.15 / 0.9, 0.5 / 0.9, 0, 0.25 / 0.9}, "min_p=0.25");
  ExpectDistribution(Sampler(Params(1.0f, 0, 1.0f, 0.9f)).Distribution(logits, {}),
                     {0, 1, 0, 0}, "min_p=0.9");
}

TEST(SamplerTest, TopPActsOnProbabilitiesRenormalisedAfterTopK) {
  // transformers (and vLLM) apply top-p to the softmax of the top-k survivors. With
  // p = {0.4, 0.3, 0.2, 0.1} and k = 2 the survivors renormalise to {4/7, 3/7}; top-p 0.5 is
  // reached by the first alone, so only token 0 remains. (Cumulating the un-renormalised
  // probabilities would need 0.4 + 0.3 and wrongly keep both.)
  const std::vector<float> logits = LogitsFor({0.4, 0.3, 0.2, 0.1});
  ExpectDistribution(Sampler(Params(1.0f, 2, 0.5f)).Distribution(logits, {}), {1, 0, 0, 0},
                     "k=2 p=0.5");
  // k = 3 -> {4/9, 3/9, 2/9}; p = 0.75 needs the first two (7/9 >= 0.75).
  ExpectDistribution(Sampler(Params(1.0f, 3, 0.75f)).Distribution(logits, {}),
                     {4.0 / 7, 3.0 / 7, 0, 0}, "k=3 p=0.75");
}

TEST(SamplerTest, FiltersCombineWithTemperature) {
  // T = 0.5 squares the probabilities: {0.4, 0.3, 0.2, 0.1} -> {16, 9, 4, 1} / 30.
  const std::vector<float> logits = LogitsFor({0.4, 0.3, 0.2, 0.1});
  ExpectDistribution(Sampler(Params(0.5f)).Distribution(logits, {}),
                     {16.0 / 30, 9.0 / 30, 4.0 / 30, 1.0 / 30}, "T=0.5");
  // top-p 0.8: 16/30 = 0.533 < 0.8, 25/30 = 0.833 >= 0.8 -> {16, 9} / 25.
  ExpectDistribution(Sampler(Params(0.5f, 0, 0.8f)).Distribution(logits, {}),
                     {16.0 / 25, 9.0 / 25, 0, 0}, "T=0.5 p=0.8");
  // min-p 0.2: threshold 0.2 * 16/30 = 3.2/30 -> keeps 16, 9, 4.
  ExpectDistribution(Sampler(Params(0.5f, 0, 1.0f, 0.2f)).Distribution(logits, {}),
                     {16.0 / 29, 9.0 / 29, 4.0 / 29, 0}, "T=0.5 min_p=0.2");
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  const std::vector<float> logits = {2.0f, -1.0f, 1.0f, 0.5f};
  // History has token 0 (positive logit), 1 (negative) twice, and an out-of-range id.
  const std::vector<int32_t> history = {0, 1, 1, 99, -3};
  const float penalty = 2.0f;
  const std::vector<double> penalized = {1.0, -2.0, 1.0, 0.5};
  std::vector<double> expected(4);
  double z = 0;
  for (int i = 0; i < 4; ++i) z += expected[i] = std::exp(penalized[i]);
  for (double& e : expected) e /= z;
  ExpectDistribution(Sampler(Params(1.0f, 0, 1.0f, 0.0f, penalty)).Distribution(logits, history),
                     expected, "penalty 2");
  // Greedy with the penalty: token 0 drops to 2/3, below token 2.
  Sampler greedy(Params(0.0f, 0, 1.0f, 0.0f, 3.0f));
  EXPECT_EQ(greedy.Sample(logits, std::vector<int32_t>{0}), 2);  // 2/3 < 1
  EXPECT_EQ(greedy.Sample(logits, {}), 0);
  // A penalty < 1 rewards repeats: token 2's 1.0 / 0.25 = 4.0 beats token 0's 2.0.
  ExpectDistribution(Sampler(Params(0.0f, 0, 1.0f, 0.0f, 0.25f)).Distribution(logits, {2}),
                     {0, 0, 1, 0}, "penalty 0.25");
}

TEST(SamplerTest, LogProbability) {
  const std::vector<float> logits = {1.0f, 2.0f, 3.0f, -50.0f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  double total = 0;
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(LogProbability(logits, i), logits[i] - std::log(z), 1e-12);
    total += std::exp(LogProbability(logits, i));
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
  // Large logits do not overflow.
  const std::vector<float> big = {1e4f, 1e4f};
  EXPECT_NEAR(LogProbability(big, 0), std::log(0.5), 1e-12);
}

// Critical chi-square value at upper tail probability 0.001 (Wilson-Hilferty).
double ChiSquareCritical(int df) {
  const double z = 3.0902;  // standard normal 0.999 quantile
  const double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

void ExpectSamplesFollowDistribution(const SamplingParams& params, const std::vector<float>& logits,
                                     const std::vector<int32_t>& history, const std::string& what) {
  Sampler sampler(params);
  const std::vector<double> probs = sampler.Distribution(logits, history);
  const int kDraws = 20000;
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) {
    const int32_t t = sampler.Sample(logits, history);
    ASSERT_GE(t, 0);
    ASSERT_LT(static_cast<size_t>(t), logits.size());
    ++counts[t];
  }
  double chi2 = 0;
  int support = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (probs[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << what << ": filtered token " << i << " was drawn";
      continue;
    }
    ++support;
    const double expected = probs[i] * kDraws;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  ASSERT_GE(support, 2) << what;
  EXPECT_LT(chi2, ChiSquareCritical(support - 1)) << what << " (df " << support - 1 << ")";
}

TEST(SamplerTest, SamplesFollowDistributionChiSquare) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<float> logits(40);
  for (float& l : logits) l = normal(rng);
  const std::vector<int32_t> history = {3, 7, 7, 11, 20};
  ExpectSamplesFollowDistribution(Params(1.0f, 0, 1.0f, 0.0f, 1.0f, 101), logits, {}, "T=1");
  ExpectSamplesFollowDistribution(Params(0.7f, 0, 1.0f, 0.0f, 1.0f, 102), logits, {}, "T=0.7");
  ExpectSamplesFollowDistribution(Params(1.3f, 8, 1.0f, 0.0f, 1.0f, 103), logits, {}, "top_k=8");
  ExpectSamplesFollowDistribution(Params(1.0f, 0, 0.8f, 0.0f, 1.0f, 104), logits, {}, "top_p=0.8");
  ExpectSamplesFollowDistribution(Params(1.0f, 0, 1.0f, 0.1f, 1.0f, 105), logits, {}, "min_p=0.1");
  ExpectSamplesFollowDistribution(Params(0.9f, 20, 0.9f, 0.05f, 1.3f, 106), logits, history,
                                  "all filters + penalty");
}

// An independent implementation of transformers' processors for random vocabularies
// (no ties in random logits, so top-k's tie rule does not matter).
std::vector<double> ReferenceDistribution(const SamplingParams& p, const std::vector<float>& logits,
                                          const std::vector<int32_t>& history) {
  const size_t n = logits.size();
  std::vector<double> s(logits.begin(), logits.end());
  std::vector<bool> seen(n, false);
  for (int32_t t : history) {
    if (t >= 0 && static_cast<size_t>(t) < n) seen[t] = true;
  }
  for (size_t i = 0; i < n; ++i) {
    if (seen[i]) s[i] = s[i] < 0 ? s[i] * p.repetition_penalty : s[i] / p.repetition_penalty;
  }
  for (double& v : s) v /= p.temperature;
  std::vector<bool> keep(n, true);
  auto softmax = [&]() {
    std::vector<double> q(n, 0.0);
    double mx = -INFINITY, z = 0;
    for (size_t i = 0; i < n; ++i) {
      if (keep[i]) mx = std::max(mx, s[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      if (keep[i]) z += q[i] = std::exp(s[i] - mx);
    }
    for (double& v : q) v /= z;
    return q;
  };
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return s[a] > s[b]; });
  if (p.top_k > 0) {
    for (size_t r = static_cast<size_t>(p.top_k); r < n; ++r) keep[order[r]] = false;
  }
  if (p.top_p < 1.0f) {
    const std::vector<double> q = softmax();
    double before = 0;  // mass strictly above this rank
    for (size_t r = 0; r < n; ++r) {
      if (!keep[order[r]]) continue;
      if (r > 0 && before >= p.top_p) keep[order[r]] = false;
      before += q[order[r]];
    }
  }
  if (p.min_p > 0.0f) {
    const std::vector<double> q = softmax();
    const double threshold = p.min_p * q[order[0]];
    for (size_t i = 0; i < n; ++i) {
      if (keep[i] && q[i] < threshold) keep[i] = false;
    }
  }
  return softmax();
}

TEST(SamplerTest, DistributionMatchesReferenceOnRandomVocab) {
  std::mt19937 rng(2026);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_int_distribution<int32_t> token(0, 999);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<float> logits(1000);
    for (float& l : logits) l = normal(rng);
    std::vector<int32_t> history(30);
    for (int32_t& t : history) t = token(rng);
    const float temps[] = {0.3f, 0.8f, 1.0f, 1.7f};
    const int ks[] = {0, 1, 5, 50, 400};
    const float ps[] = {1.0f, 0.3f, 0.77f, 0.95f};
    const float mins[] = {0.0f, 0.01f, 0.2f};
    const float pens[] = {1.0f, 1.2f, 0.8f};
    const SamplingParams p = Params(temps[trial % 4], ks[trial % 5], ps[(trial / 2) % 4],
                                    mins[(trial / 3) % 3], pens[(trial / 4) % 3]);
    const std::vector<double> got = Sampler(p).Distribution(logits, history);
    const std::vector<double> want = ReferenceDistribution(p, logits, history);
    for (size_t i = 0; i < logits.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-9)
          << "trial " << trial << " token " << i << " T " << p.temperature << " k " << p.top_k
          << " p " << p.top_p << " min_p " << p.min_p << " penalty " << p.repetition_penalty;
      ASSERT_EQ(got[i] == 0.0, want[i] == 0.0) << "trial " << trial << " token " << i;
    }
  }
}

TEST(SamplerTest, SeededRunsRepeat) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(64);
  for (float& l : logits) l = normal(rng);
  Sampler a(Params(1.0f, 0, 0.95f, 0.0f, 1.0f, 42)), b(Params(1.0f, 0, 0.95f, 0.0f, 1.0f, 42));
  Sampler c(Params(1.0f, 0, 0.95f, 0.0f, 1.0f, 43));
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 200; ++i) {
    sa.push_back(a.Sample(logits, {}));
    sb.push_back(b.Sample(logits, {}));
    sc.push_back(c.Sample(logits, {}));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(SamplerTest, ValidateNamesBadFields) {
  EXPECT_TRUE(SamplingParams().Validate().ok());
  EXPECT_TRUE(Params(0.7f, 40, 0.9f, 0.05f, 1.1f).Validate().ok());
  struct Bad {
    SamplingParams p;
    const char* field;
  };
  const float nan = std::nanf("");
  const float inf = INFINITY;
  for (const Bad& b : {Bad{Params(-0.1f), "temperature"}, Bad{Params(nan), "temperature"},
                       Bad{Params(inf), "temperature"}, Bad{Params(1.0f, -1), "top_k"},
                       Bad{Params(1.0f, 0, 0.0f), "top_p"}, Bad{Params(1.0f, 0, 1.01f), "top_p"},
                       Bad{Params(1.0f, 0, nan), "top_p"}, Bad{Params(1.0f, 0, 1.0f, -0.1f), "min_p"},
                       Bad{Params(1.0f, 0, 1.0f, 1.0f), "min_p"},
                       Bad{Params(1.0f, 0, 1.0f, nan), "min_p"},
                       Bad{Params(1.0f, 0, 1.0f, 0.0f, 0.0f), "repetition_penalty"},
                       Bad{Params(1.0f, 0, 1.0f, 0.0f, -1.0f), "repetition_penalty"},
                       Bad{Params(1.0f, 0, 1.0f, 0.0f, inf), "repetition_penalty"},
                       Bad{Params(1.0f, 0, 1.0f, 0.0f, nan), "repetition_penalty"}}) {
    absl::Status s = b.p.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.field;
    EXPECT_THAT(std::string(s.message()), HasSubstr(b.field));
  }
}

}  // namespace
}  // namespace dsinfer

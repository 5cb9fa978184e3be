// Proves the host side of the device token path (engine/token_choice.h) alone: the kernel's
// knobs carry every filter of a request's SamplingParams; a repetition penalty, a row that
// needs whole logits, or a backend without the path sends the step to the host; the device
// path draws a uniform exactly where Sampler::Sample would (sampled rows only, none for greedy
// or unused rows), so a seeded request's stream is the same on either path, and the token
// Sample returns is SampleAt the uniform it drew; ValidateSampleKnobs names each bad knob,
// ValidateDeviceTokenChoice a uniform outside [0, 1) and the row.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/token_choice.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/sample_knobs.h"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

SamplingParams Sampled(float temperature, uint64_t seed) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.seed = seed;
  return p;
}

std::vector<float> RandomLogits(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 2.0f);
  std::vector<float> v(n);
  for (float& x : v) x = g(rng);
  return v;
}

TEST(TokenChoiceTest, KnobsCarryTheSamplingFilters) {
  const SampleKnobs k = KnobsFor(Sampled(0.7f, 1));
  EXPECT_EQ(k.temperature, 0.7f);
  EXPECT_EQ(k.top_k, 40);
  EXPECT_EQ(k.top_p, 0.9f);
  EXPECT_EQ(k.min_p, 0.05f);
  EXPECT_EQ(KnobsFor(SamplingParams()).temperature, 0.0f);  // greedy: argmax on the device
  EXPECT_TRUE(ValidateSampleKnobs(k).ok());
}

TEST(TokenChoiceTest, RepetitionPenaltyNeedsTheHostPath) {
  SamplingParams p = Sampled(1.0f, 1);
  EXPECT_TRUE(DeviceCanChoose(p));
  EXPECT_TRUE(DeviceCanChoose(SamplingParams()));
  p.repetition_penalty = 1.1f;
  EXPECT_FALSE(DeviceCanChoose(p));
  p.temperature = 0.0f;  // greedy with a penalty is not the plain argmax
  EXPECT_FALSE(DeviceCanChoose(p));
}

TEST(TokenChoiceTest, StepGoesToTheHostWhenAnyRowNeedsIt) {
  Sampler greedy{SamplingParams()}, sampled{Sampled(1.0f, 3)};
  SamplingParams penalised = Sampled(1.0f, 4);
  penalised.repetition_penalty = 1.2f;
  Sampler with_penalty{penalised};

  StepTokenChoices plain(true);
  plain.AddRow(&greedy, false);
  plain.AddRow(nullptr, false);
  plain.AddRow(&sampled, false);
  EXPECT_TRUE(plain.on_device());
  EXPECT_EQ(plain.rows(), 3u);

  StepTokenChoices no_backend(false);
  no_backend.AddRow(&greedy, false);
  EXPECT_FALSE(no_backend.on_device());

  StepTokenChoices whole_rows(true);
  whole_rows.AddRow(&sampled, false);
  whole_rows.AddRow(nullptr, /*needs_host_logits=*/true);  // e.g. prompt logprobs
  EXPECT_FALSE(whole_rows.on_device());

  StepTokenChoices penalty(true);
  penalty.AddRow(&greedy, false);
  penalty.AddRow(&with_penalty, false);
  penalty.AddRow(&sampled, false);
  EXPECT_FALSE(penalty.on_device());
}

TEST(TokenChoiceTest, DrawGivesTheUniformsSampleWouldDraw) {
  const SamplingParams a_params = Sampled(0.8f, 11), b_params = Sampled(1.3f, 12);
  Sampler a(a_params), b(b_params), greedy{SamplingParams()};
  Sampler a_twin(a_params), b_twin(b_params);
  for (int step = 0; step < 5; ++step) {
    StepTokenChoices choices(true);
    choices.AddRow(&a, false);
    choices.AddRow(nullptr, false);
    choices.AddRow(&greedy, false);
    choices.AddRow(&b, false);
    ASSERT_TRUE(choices.on_device());
    const std::vector<DeviceTokenChoice> c = choices.Draw();
    ASSERT_EQ(c.size(), 4u);
    EXPECT_EQ(c[0].uniform, a_twin.DrawUniform()) << "step " << step;
    EXPECT_EQ(c[3].uniform, b_twin.DrawUniform()) << "step " << step;
    EXPECT_EQ(c[0].knobs.temperature, 0.8f);
    EXPECT_EQ(c[3].knobs.temperature, 1.3f);
    EXPECT_EQ(c[1].knobs.temperature, 0.0f);  // unused row: argmax, nothing drawn
    EXPECT_EQ(c[2].knobs.temperature, 0.0f);
    EXPECT_EQ(c[1].uniform, 0.0);
    EXPECT_EQ(c[2].uniform, 0.0);
    for (const DeviceTokenChoice& x : c) {
      EXPECT_TRUE(ValidateSampleKnobs(x.knobs).ok());
      EXPECT_GE(x.uniform, 0.0);
      EXPECT_LT(x.uniform, 1.0);
    }
  }
  // The host path continues the very same stream: a step on either path uses the next draw.
  const std::vector<float> logits = RandomLogits(300, 5);
  EXPECT_EQ(a.Sample(logits, {}), a_twin.SampleAt(logits, {}, a_twin.DrawUniform()));
}

TEST(TokenChoiceTest, SampleAtTheDrawnUniformIsSample) {
  const std::vector<float> logits = RandomLogits(1000, 9);
  for (float temperature : {0.5f, 1.0f, 1.7f}) {
    Sampler s(Sampled(temperature, 21)), twin(Sampled(temperature, 21));
    for (int k = 0; k < 50; ++k) {
      const double u = twin.DrawUniform();
      EXPECT_EQ(s.Sample(logits, {}), twin.SampleAt(logits, {}, u)) << "draw " << k;
    }
  }
}

TEST(TokenChoiceTest, ValidateSampleKnobsNamesTheBadKnob) {
  auto message = [](SampleKnobs k) {
    const absl::Status s = ValidateSampleKnobs(k);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    return std::string(s.message());
  };
  SampleKnobs k;
  k.temperature = -1.0f;
  EXPECT_THAT(message(k), HasSubstr("temperature"));
  k.temperature = NAN;
  EXPECT_THAT(message(k), HasSubstr("temperature"));
  k = SampleKnobs();
  k.top_k = -3;
  EXPECT_THAT(message(k), HasSubstr("top_k"));
  k = SampleKnobs();
  k.top_p = 0.0f;
  EXPECT_THAT(message(k), HasSubstr("top_p"));
  k.top_p = 1.5f;
  EXPECT_THAT(message(k), HasSubstr("top_p"));
  k = SampleKnobs();
  k.min_p = 1.0f;
  EXPECT_THAT(message(k), HasSubstr("min_p"));
  EXPECT_TRUE(ValidateSampleKnobs(SampleKnobs()).ok());
}

TEST(TokenChoiceTest, ValidateDeviceTokenChoiceNamesTheRow) {
  DeviceTokenChoice c;
  EXPECT_TRUE(ValidateDeviceTokenChoice(c, 0).ok());
  c.uniform = 1.0;
  absl::Status s = ValidateDeviceTokenChoice(c, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("row 3"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("uniform"));
  c.uniform = -0.5;
  EXPECT_EQ(ValidateDeviceTokenChoice(c, 0).code(), absl::StatusCode::kInvalidArgument);
  c.uniform = NAN;
  EXPECT_EQ(ValidateDeviceTokenChoice(c, 0).code(), absl::StatusCode::kInvalidArgument);
  c.uniform = 0.5;
  c.knobs.min_p = 2.0f;
  s = ValidateDeviceTokenChoice(c, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("min_p"));
}

}  // namespace
}  // namespace dsinfer

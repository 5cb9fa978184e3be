// dsinfer-eval's retrieval path: the committed retrieval set loads, bad files are refused
// naming the line, and EvaluateRetrieval scores the trained demo model's greedy answers —
// right answers count as correct, a corrupted expected answer as wrong — leaving the KV pool
// and label cache idle.
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/eval.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

constexpr char kRetrievalFile[] = "tests/data/eval/retrieval.jsonl";

TEST(RetrievalEval, CommittedSetLoads) {
  auto items = LoadRetrievalItems(kRetrievalFile);
  ASSERT_TRUE(items.ok()) << items.status();
  ASSERT_EQ(items->size(), 80u);
  for (const RetrievalItem& item : *items) {
    EXPECT_EQ(item.prompt.front(), 1) << "prompts start with BOS";
    EXPECT_FALSE(item.answer.empty());
    EXPECT_GE(item.question_tokens, 1);
    EXPECT_LT(item.question_tokens, static_cast<int64_t>(item.prompt.size()));
    EXPECT_GE(item.depth, 0.0);
    EXPECT_LE(item.depth, 1.0);
  }
}

TEST(RetrievalEval, BadFilesAreRefusedNamingTheLine) {
  EXPECT_EQ(LoadRetrievalItems("tests/data/eval/no-such-file.jsonl").status().code(),
            absl::StatusCode::kNotFound);
  const std::string path = ::testing::TempDir() + "/bad_retrieval_" +
      std::to_string(::getpid()) + ".jsonl";
  {
    std::ifstream in(kRetrievalFile);
    std::string first;
    std::getline(in, first);
    std::ofstream out(path);
    out << first << "\n{\"prompt_ids\": [1, 2, 3], \"answer_ids\": \"not a list\"}\n";
  }
  auto items = LoadRetrievalItems(path);
  ASSERT_FALSE(items.ok());
  EXPECT_EQ(items.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(items.status().message()).find(path + ":2:"), std::string::npos)
      << items.status();
}

TEST(RetrievalEval, ScoresTheDemoModelsAnswers) {
  auto items = LoadRetrievalItems(kRetrievalFile);
  ASSERT_TRUE(items.ok()) << items.status();
  // The shortest prompt of the 1K class (transformers answered every 1K prompt correctly).
  std::vector<RetrievalItem> one = {items->front()};
  for (const RetrievalItem& item : *items) {
    if (item.target_len == one[0].target_len && item.prompt.size() < one[0].prompt.size()) {
      one[0] = item;
    }
  }
  RetrievalItem wrong = one[0];
  wrong.answer.back() = wrong.answer.back() == 28734 ? 28740 : 28734;  // another digit piece
  CpuBackend backend;
  ModelOptions model_options;
  model_options.kv_pool_tokens = 4096;
  auto model = Model::Load("models/demo", backend, model_options);
  ASSERT_TRUE(model.ok()) << model.status();
  EvalOptions options;
  options.ratios = {1.0 / 2};
  options.label_bits = {16};
  options.aggregations = {GroupAggregation::kSum};
  auto report = EvaluateRetrieval(**model, {one[0], wrong}, options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 2u);  // dense, then the one sparse setting
  for (const RetrievalRun& run : report->runs) {
    ASSERT_EQ(run.total.size(), 1u) << run.mode;
    EXPECT_EQ(run.total[0], 2) << run.mode;
    EXPECT_EQ(run.correct[0], 1) << run.mode << ": the right answer, not the corrupted one";
  }
  EXPECT_EQ((*model)->kv_pool().blocks_in_use(), 0);
}

}  // namespace
}  // namespace dsinfer

// Proves the dsinfer-run command line: --json prints one object whose token_ids equal what the
// library generates in-process; --prompt-logprobs adds len(prompt)-1 log-probabilities;
// dash and underscore spellings are the same flag; DSINFER_* environment variables set
// defaults and the command line wins; bad flags and bad requests exit nonzero with a message
// naming the problem.
#include <array>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

constexpr char kModel[] = "tests/data/golden/llama-gqa-hd64";

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// Runs dsinfer-run with `args` (already shell-quoted) under `env` assignments.
RunResult RunTool(const std::string& args, const std::string& env = "") {
  const std::string cmd =
      "env -u DSINFER_MAX_NEW_TOKENS -u DSINFER_JSON -u DSINFER_MODEL -u DSINFER_PROMPT_IDS " + env +
      " " DSINFER_BINARY_DIR "/bin/dsinfer-run " + args + " 2>&1";
  RunResult r;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

nlohmann::json ParseJson(const RunResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.out;
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  EXPECT_TRUE(j.is_object()) << r.out;
  return j;
}

std::vector<int32_t> InProcessGreedy(const std::vector<int32_t>& prompt, int64_t n) {
  CpuBackend backend;
  auto model = Model::Load(kModel, backend);
  EXPECT_TRUE(model.ok()) << model.status();
  GenerationRequest r;
  r.prompt = prompt;
  r.max_new_tokens = n;
  r.ignore_eos = true;
  auto res = Generate(**model, {r});
  EXPECT_TRUE(res.ok()) << res.status();
  return (*res)[0].tokens;
}

TEST(RunMainTest, JsonTokenIdsMatchLibrary) {
  const nlohmann::json j =
      ParseJson(RunTool(std::string("--model ") + kModel +
                    " --prompt-ids 1,2,3,40,7 --max-new-tokens 6 --ignore-eos --json"));
  ASSERT_TRUE(j.contains("token_ids"));
  const std::vector<int32_t> ids = j["token_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(ids, InProcessGreedy({1, 2, 3, 40, 7}, 6));
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_FALSE(j.contains("prompt_logprobs"));
  EXPECT_EQ(j["token_logprobs"].size(), 6u);
}

// A prompt from a file (commas and any whitespace between ids) gives what the same ids on the
// command line give, and the JSON reports the prefill and decode times.
TEST(RunMainTest, PromptIdsFileMatchesFlagAndTimingIsReported) {
  const std::string path = ::testing::TempDir() + "/run_main_prompt_ids.txt";
  std::ofstream(path) << "1, 2\n3\t40 ,7\n";
  const std::string base = std::string("--model ") + kModel + " --max-new-tokens 6 --ignore-eos --json ";
  const nlohmann::json file = ParseJson(RunTool(base + "--prompt-ids-file " + path));
  const nlohmann::json flag = ParseJson(RunTool(base + "--prompt-ids 1,2,3,40,7"));
  EXPECT_EQ(file["token_ids"], flag["token_ids"]);
  EXPECT_EQ(file["usage"]["prompt_tokens"], 5);
  ASSERT_TRUE(file.contains("timing")) << file.dump();
  const nlohmann::json& t = file["timing"];
  EXPECT_GT(t["prefill_seconds"].get<double>(), 0.0);
  EXPECT_GT(t["decode_seconds"].get<double>(), 0.0);
  EXPECT_GT(t["first_decode_seconds"].get<double>(), 0.0);
  EXPECT_LE(t["first_decode_seconds"].get<double>(), t["decode_seconds"].get<double>());
  EXPECT_GT(t["prompt_tokens_per_second"].get<double>(), 0.0);
  EXPECT_GT(t["decode_tokens_per_second"].get<double>(), 0.0);
  // A bad file, a bad id in it, and a file beside another prompt flag are refused by name.
  std::ofstream(path) << "1,2,three";
  RunResult bad = RunTool(base + "--prompt-ids-file " + path);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("'three'"));
  bad = RunTool(base + "--prompt-ids-file /nonexistent/ids.txt");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("/nonexistent/ids.txt"));
  bad = RunTool(base + "--prompt-ids 1 --prompt-ids-file " + path);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("one of"));
}

TEST(RunMainTest, PromptLogprobsHaveOneLessThanPrompt) {
  const nlohmann::json j = ParseJson(RunTool(std::string("--model ") + kModel +
                                         " --prompt-ids 5,6,7,8 --max-new-tokens 1 "
                                         "--prompt-logprobs --json"));
  ASSERT_TRUE(j.contains("prompt_logprobs")) << j.dump();
  ASSERT_EQ(j["prompt_logprobs"].size(), 3u);
  for (const auto& lp : j["prompt_logprobs"]) {
    EXPECT_LE(lp.get<double>(), 0.0);
    EXPECT_GT(lp.get<double>(), -50.0);
  }
  EXPECT_EQ(j["token_ids"].size(), 1u);
}

TEST(RunMainTest, UnderscoreSpellingAndEqualsForm) {
  const std::string base = std::string("--model=") + kModel + " --ignore_eos --json ";
  const nlohmann::json a = ParseJson(RunTool(base + "--prompt_ids=9,10,11 --max_new_tokens=4"));
  const nlohmann::json b = ParseJson(RunTool(base + "--prompt-ids 9,10,11 --max-new-tokens 4"));
  EXPECT_EQ(a["token_ids"].size(), 4u);
  EXPECT_EQ(a["token_ids"], b["token_ids"]);
}

TEST(RunMainTest, EnvironmentSetsDefaultsAndFlagsWin) {
  const std::string args = std::string("--model ") + kModel + " --prompt-ids 1,2,3 --ignore-eos --json";
  const nlohmann::json env = ParseJson(RunTool(args, "DSINFER_MAX_NEW_TOKENS=3"));
  EXPECT_EQ(env["token_ids"].size(), 3u);
  const nlohmann::json flag = ParseJson(RunTool(args + " --max-new-tokens 5", "DSINFER_MAX_NEW_TOKENS=3"));
  EXPECT_EQ(flag["token_ids"].size(), 5u);
  // The model and prompt themselves can come from the environment.
  const nlohmann::json all = ParseJson(
      RunTool("--ignore-eos", std::string("DSINFER_MODEL=") + kModel +
                              " DSINFER_PROMPT_IDS=1,2,3 DSINFER_MAX_NEW_TOKENS=2 DSINFER_JSON=true"));
  EXPECT_EQ(all["token_ids"].size(), 2u);
  EXPECT_EQ(all["token_ids"][0], env["token_ids"][0]);
  // A malformed environment value is an error naming the variable.
  const RunResult bad = RunTool(args, "DSINFER_MAX_NEW_TOKENS=lots");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.out, HasSubstr("DSINFER_MAX_NEW_TOKENS"));
}

TEST(RunMainTest, SeededSamplingRepeats) {
  const std::string args = std::string("--model ") + kModel +
                           " --prompt-ids 1,2,3 --max-new-tokens 8 --ignore-eos --json "
                           "--temperature 1.0 --top-p 0.95 --seed ";
  const nlohmann::json a = ParseJson(RunTool(args + "11"));
  const nlohmann::json b = ParseJson(RunTool(args + "11"));
  EXPECT_EQ(a["token_ids"], b["token_ids"]);
}

TEST(RunMainTest, BadInputsExitNonzeroWithMessage) {
  const std::string model = std::string("--model ") + kModel;
  struct Case {
    std::string args, needle;
  };
  for (const Case& c : std::vector<Case>{
           {model + " --prompt-ids 1,2 --no-such-flag", "such_flag"},  // reported as no_such_flag
           {model + " --prompt-ids 1,x,3", "'x'"},
           {model, "prompt"},
           {"--prompt-ids 1,2", "--model"},
           {"--model /nonexistent/dir --prompt-ids 1,2", "/nonexistent/dir"},
           {model + " --prompt-ids 1,99999", "99999"},
           {model + " --prompt-ids 1,2 --max-new-tokens 0", "max_new_tokens"},
           {model + " --prompt-ids 1,2 --max-new-tokens many", "many"},
           {model + " --prompt-ids 1,2 --temperature -1", "temperature"},
           {model + " --prompt-ids 1,2 --top-p 1.5", "top_p"},
           {model + " --prompt-ids 1,2 --max-new-tokens 100 --max-context 50", "context"},
           {model + " --prompt-ids 1,2 --device tpu", "tpu"}}) {
    const RunResult r = RunTool(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(c.needle)) << c.args;
  }
}

}  // namespace
}  // namespace dsinfer

// dsinfer-tokenizer-bench: the tokenizer speed figures of docs/tokenizer.md, on one thread.
//   load      time to LoadFromDir (parse JSON, build vocabulary and merge table)
//   prose     encode throughput on English prose (--text, or the concatenated files of
//             /usr/share/common-licenses repeated up to --prose-mb)
//   nospace   encode time of one --nospace-mb string of pseudo-random letters without spaces
//             (the worst case for BPE: a single huge piece)
//   decode    decode throughput of the prose ids
// Each figure is the best of --repeats runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "absl/flags/flag.h"
#include "engine/model_config.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/cli_flags.h"

ABSL_FLAG(std::string, tokenizer, "", "directory with tokenizer.json");
ABSL_FLAG(std::string, text, "", "prose file (default: /usr/share/common-licenses/*)");
ABSL_FLAG(double, prose_mb, 8.0, "size of the prose input in MB");
ABSL_FLAG(double, nospace_mb, 1.0, "size of the no-space input in MB");
ABSL_FLAG(int, repeats, 3, "runs per figure (best is reported)");

namespace {

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "dsinfer-tokenizer-bench: error: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(argc, argv, "dsinfer-tokenizer-bench --tokenizer DIR");
  const std::string dir = absl::GetFlag(FLAGS_tokenizer);
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));

  double load_s = 1e9;
  std::unique_ptr<dsinfer::Tokenizer> tokenizer;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    auto t = dsinfer::Tokenizer::LoadFromDir(dir);
    load_s = std::min(load_s, Seconds(start));
    if (!t.ok()) return Fail(t.status());
    tokenizer = *std::move(t);
  }

  std::string seed;
  if (!absl::GetFlag(FLAGS_text).empty()) {
    auto text = dsinfer::ReadFile(absl::GetFlag(FLAGS_text));
    if (!text.ok()) return Fail(text.status());
    seed = *text;
  } else {
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator("/usr/share/common-licenses", ec)) {
      if (!entry.is_regular_file()) continue;
      auto text = dsinfer::ReadFile(entry.path().string());
      if (text.ok()) seed += *text;
    }
  }
  if (seed.empty()) return Fail(absl::NotFoundError("no prose input"));
  const size_t prose_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_prose_mb) * 1e6);
  std::string prose;
  while (prose.size() < prose_bytes) prose += seed;

  double encode_s = 1e9;
  std::vector<int32_t> ids;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    auto encoded = tokenizer->Encode(prose);
    encode_s = std::min(encode_s, Seconds(start));
    if (!encoded.ok()) return Fail(encoded.status());
    ids = *std::move(encoded);
  }
  double decode_s = 1e9;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    auto decoded = tokenizer->Decode(ids);
    decode_s = std::min(decode_s, Seconds(start));
    if (!decoded.ok()) return Fail(decoded.status());
  }

  std::mt19937 rng(20261128);
  std::uniform_int_distribution<int> letter(0, 25);
  std::string nospace(static_cast<size_t>(absl::GetFlag(FLAGS_nospace_mb) * 1e6), 'a');
  for (char& c : nospace) c = static_cast<char>('a' + letter(rng));
  double nospace_s = 1e9;
  size_t nospace_tokens = 0;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    auto encoded = tokenizer->Encode(nospace);
    nospace_s = std::min(nospace_s, Seconds(start));
    if (!encoded.ok()) return Fail(encoded.status());
    nospace_tokens = encoded->size();
  }

  std::printf("tokenizer: %s (vocab %lld)\n", dir.c_str(),
              static_cast<long long>(tokenizer->vocab_size()));
  std::printf("load:    %.3f s\n", load_s);
  std::printf("prose:   %.2f MB -> %zu tokens in %.3f s = %.2f MB/s\n", prose.size() / 1e6,
              ids.size(), encode_s, prose.size() / 1e6 / encode_s);
  std::printf("decode:  %zu tokens in %.3f s = %.2f MB/s\n", ids.size(), decode_s,
              prose.size() / 1e6 / decode_s);
  std::printf("nospace: %.2f MB -> %zu tokens in %.3f s\n", nospace.size() / 1e6, nospace_tokens,
              nospace_s);
  return 0;
}

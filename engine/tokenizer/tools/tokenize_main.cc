// dsinfer-tokenize: the offline tokenizer, like llama.cpp's llama-tokenize. Reads JSON lines on
// stdin — {"text": "..."} to encode, or {"ids": [...]} with --decode — and writes one JSON
// line per input: {"ids": [...]} or {"text": "..."}, or {"error": "..."} for a bad line (the
// exit status is then 1, after all lines). --no-special encodes without BOS/EOS and decodes
// without special tokens.
#include <cstdio>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/cli_flags.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, tokenizer, "", "directory with tokenizer.json (+ tokenizer_config.json)");
ABSL_FLAG(bool, decode, false, "read {\"ids\": [...]} lines and write {\"text\": ...}");
ABSL_FLAG(bool, no_special, false, "no BOS/EOS when encoding; skip special tokens when decoding");

namespace {

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv, "dsinfer-tokenize --tokenizer DIR [--decode] [--no-special] < in.jsonl");
  const std::string dir = absl::GetFlag(FLAGS_tokenizer);
  if (dir.empty()) {
    std::fprintf(stderr, "dsinfer-tokenize: error: --tokenizer is required\n");
    return 2;
  }
  auto tokenizer = dsinfer::Tokenizer::LoadFromDir(dir);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "dsinfer-tokenize: error: %s\n",
                 std::string(tokenizer.status().message()).c_str());
    return 2;
  }
  const bool decode = absl::GetFlag(FLAGS_decode);
  const bool special = !absl::GetFlag(FLAGS_no_special);
  std::ios::sync_with_stdio(false);
  int status = 0;
  std::string line;
  size_t line_number = 0;
  while (std::getline(std::cin, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fail = [&](const std::string& message) {
      std::cout << Dump({{"error", "line " + std::to_string(line_number) + ": " + message}})
                << "\n";
      status = 1;
    };
    nlohmann::json in = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (in.is_discarded() || !in.is_object()) {
      fail("not a JSON object");
      continue;
    }
    if (!decode) {
      auto text = in.find("text");
      if (text == in.end() || !text->is_string()) {
        fail("expected {\"text\": string}");
        continue;
      }
      auto ids = (*tokenizer)->Encode(text->get_ref<const std::string&>(), special);
      if (!ids.ok()) {
        fail(std::string(ids.status().message()));
        continue;
      }
      std::cout << Dump({{"ids", *ids}}) << "\n";
    } else {
      auto ids_json = in.find("ids");
      std::vector<int32_t> ids;
      bool ok = ids_json != in.end() && ids_json->is_array();
      if (ok) {
        for (const auto& v : *ids_json) {
          if (!v.is_number_integer()) {
            ok = false;
            break;
          }
          ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
        }
      }
      if (!ok) {
        fail("expected {\"ids\": [integers]}");
        continue;
      }
      auto text = (*tokenizer)->Decode(ids, /*skip_special_tokens=*/!special);
      if (!text.ok()) {
        fail(std::string(text.status().message()));
        continue;
      }
      std::cout << Dump({{"text", *text}}) << "\n";
    }
  }
  std::cout.flush();
  return status;
}

// Text end to end (DESIGN §3 step 5, §6) on the trained demo model in models/demo (17.6 M
// parameters, the real 32K SentencePiece vocabulary): dsinfer-server on a free loopback port,
// the CPU backend. A text prompt's streamed pieces concatenate to the unary text, which is the
// tokenizer's decoding of the tokens and dsinfer-run --prompt's text; stop sequences end
// generation before their first occurrence and never leak into the stream; Tokenize and
// Detokenize round-trip multi-byte text; sampled text with multi-byte characters streams as
// valid UTF-8 in every message. The demo model never emits byte-fallback tokens (it was trained
// on English), so a multi-byte character split over several tokens is exercised on the tiny
// random model given a byte-fallback tokenizer written here: about half its vocabulary is
// <0xNN> byte tokens, so sampled output is full of characters split across steps.
//
// DSINFER_TEST_DEMO_MODEL (environment) points the test at another copy of the demo model.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace dsinfer::testing {
namespace {

using ::testing::HasSubstr;

std::string DemoDir() {
  const char* dir = std::getenv("DSINFER_TEST_DEMO_MODEL");
  return dir != nullptr && *dir != '\0' ? dir : DSINFER_DEMO_MODEL_DIR;
}

// Whether `s` is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF).
bool IsValidUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;  // truncated
    for (int k = 1; k <= n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

struct Streamed {
  grpc::Status status;
  std::vector<std::string> pieces;
  std::string text;
  std::vector<int32_t> tokens;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  std::string matched_stop;
};

Streamed RunStream(v1::Inference::Stub& stub, const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  auto reader = stub.GenerateStream(&context, request);
  v1::GenerateStreamResponse message;
  Streamed out;
  while (reader->Read(&message)) {
    out.pieces.push_back(message.text());
    out.text += message.text();
    out.tokens.insert(out.tokens.end(), message.token_ids().begin(), message.token_ids().end());
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      out.finish = message.finish_reason();
      out.matched_stop = message.matched_stop();
    }
  }
  out.status = reader->Finish();
  return out;
}

v1::GenerateResponse RunUnary(v1::Inference::Stub& stub, const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  v1::GenerateResponse response;
  const grpc::Status status = stub.Generate(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response;
}

v1::GenerateRequest TextRequest(const std::string& text, uint32_t max_new_tokens) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  return r;
}

std::string Detokenize(v1::Inference::Stub& stub, const std::vector<int32_t>& ids) {
  grpc::ClientContext context;
  v1::DetokenizeRequest request;
  request.mutable_token_ids()->Add(ids.begin(), ids.end());
  v1::DetokenizeResponse response;
  const grpc::Status status = stub.Detokenize(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.text();
}

class TextServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = DemoDir();
    if (!std::ifstream(dir + "/model.safetensors.index.json") &&
        !std::ifstream(dir + "/model.safetensors")) {
      missing_ = "the demo model's weights are missing from " + dir;
      return;
    }
    server_ = new ServerProcess();
    std::string error;
    if (!server_->Start({"--model", dir, "--max-batch", "8", "--prefill-chunk", "128",
                         "--max-context", "1024", "--log-level", "warn"},
                        std::string(DSINFER_TEST_WORK_DIR) + "/text_test.port", &error)) {
      missing_ = "the server did not start: " + error;
    }
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(server_->Stop(SIGTERM), 0);
    }
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(missing_.empty()) << missing_;
    stub_ = server_->NewStub();
  }
  static ServerProcess* server_;
  static std::string missing_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
ServerProcess* TextServerTest::server_ = nullptr;
std::string TextServerTest::missing_;

TEST_F(TextServerTest, StreamedTextConcatenatesToTheUnaryTextAndDsinferRunsText) {
  const std::string prompt = "To install a package on Debian,";
  v1::GenerateRequest request = TextRequest(prompt, 40);
  request.mutable_stopping()->set_ignore_eos(true);
  const v1::GenerateResponse unary = RunUnary(*stub_, request);
  ASSERT_EQ(unary.token_ids_size(), 40);
  EXPECT_FALSE(unary.text().empty());
  EXPECT_GT(unary.usage().prompt_tokens(), 5u);
  const Streamed streamed = RunStream(*stub_, request);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_EQ(streamed.text, unary.text());
  EXPECT_EQ(streamed.tokens,
            std::vector<int32_t>(unary.token_ids().begin(), unary.token_ids().end()));
  EXPECT_EQ(streamed.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(unary.text(), Detokenize(*stub_, streamed.tokens));
  // The offline runner, tokenizing the same text itself, prints the same text.
  const std::string command =
      std::string(DSINFER_BIN_DIR) + "/dsinfer-run --model " + DemoDir() +
      " --max-context 1024 --max-new-tokens 40 --ignore-eos --json --prompt '" + prompt + "'";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << out;
  const nlohmann::json offline = nlohmann::json::parse(out);
  EXPECT_EQ(offline["text"].get<std::string>(), unary.text());
  EXPECT_EQ(offline["token_ids"].get<std::vector<int32_t>>(), streamed.tokens);
}

TEST_F(TextServerTest, StopSequenceEndsBeforeItsFirstOccurrenceAndNeverStreams) {
  const std::string prompt = "The package manager";
  v1::GenerateRequest request = TextRequest(prompt, 60);
  request.mutable_stopping()->set_ignore_eos(true);
  const std::string full = RunUnary(*stub_, request).text();
  ASSERT_GT(full.size(), 40u) << full;
  // Stops cut from the middle of the text (so they span token boundaries more often than
  // not): generation must end just before the first occurrence of each.
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 3; ++trial) {
    size_t at = std::uniform_int_distribution<size_t>(8, full.size() - 12)(rng);
    size_t end = at + std::uniform_int_distribution<size_t>(2, 7)(rng);
    // Stop sequences are UTF-8 strings: cut on character boundaries, never inside one.
    auto continuation = [&](size_t i) {
      return i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80;
    };
    while (continuation(at)) ++at;
    while (continuation(end)) ++end;
    if (end <= at) end = at + 1;
    while (continuation(end)) ++end;
    const std::string stop = full.substr(at, end - at);
    const std::string expected = full.substr(0, full.find(stop));
    v1::GenerateRequest stopped = request;
    stopped.mutable_stopping()->add_stop_sequences("never appears \x01");
    stopped.mutable_stopping()->add_stop_sequences(stop);
    const Streamed s = RunStream(*stub_, stopped);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.finish, v1::FINISH_REASON_STOP_SEQUENCE) << "stop '" << stop << "'";
    EXPECT_EQ(s.matched_stop, stop);
    EXPECT_EQ(s.text, expected) << "stop '" << stop << "'";
    // No prefix of the text ever streamed past the cut.
    std::string so_far;
    for (const std::string& piece : s.pieces) {
      so_far += piece;
      EXPECT_EQ(expected.compare(0, so_far.size(), so_far), 0) << "leaked: '" << so_far << "'";
    }
    if (trial == 0) {  // the unary path cuts the same way
      const v1::GenerateResponse unary = RunUnary(*stub_, stopped);
      EXPECT_EQ(unary.text(), expected);
      EXPECT_EQ(unary.finish_reason(), v1::FINISH_REASON_STOP_SEQUENCE);
    }
  }
}

TEST_F(TextServerTest, TokenizeDetokenizeRoundTrip) {
  const std::vector<std::string> texts = {
      "To install a package on Debian, use apt.",
      "Café crème, naïve résumé — déjà vu.",
      "日本語のテキストと中文文本。",
      "Emoji 😀🎉 and Ελληνικά, Русский текст.",
      "  leading spaces,\ttabs\nand newlines\n\n",
  };
  for (const std::string& text : texts) {
    grpc::ClientContext context;
    v1::TokenizeRequest request;
    request.set_text(text);
    request.mutable_add_special_tokens()->set_value(false);
    v1::TokenizeResponse ids;
    ASSERT_TRUE(stub_->Tokenize(&context, request, &ids).ok());
    ASSERT_GT(ids.token_ids_size(), 0);
    EXPECT_EQ(Detokenize(*stub_, {ids.token_ids().begin(), ids.token_ids().end()}), text);
    // With special tokens: BOS first, and skip_special_tokens gives the text back.
    grpc::ClientContext context2;
    request.clear_add_special_tokens();
    v1::TokenizeResponse with_bos;
    ASSERT_TRUE(stub_->Tokenize(&context2, request, &with_bos).ok());
    ASSERT_EQ(with_bos.token_ids_size(), ids.token_ids_size() + 1);
    EXPECT_EQ(with_bos.token_ids(0), 1);
    grpc::ClientContext context3;
    v1::DetokenizeRequest back;
    back.mutable_token_ids()->CopyFrom(with_bos.token_ids());
    back.set_skip_special_tokens(true);
    v1::DetokenizeResponse response;
    ASSERT_TRUE(stub_->Detokenize(&context3, back, &response).ok());
    EXPECT_EQ(response.text(), text);
  }
  // Ids outside the vocabulary are refused, not decoded.
  grpc::ClientContext context;
  v1::DetokenizeRequest bad;
  bad.add_token_ids(32000);
  v1::DetokenizeResponse response;
  EXPECT_EQ(stub_->Detokenize(&context, bad, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(TextServerTest, MultiByteTextStreamsAsValidUtf8) {
  // Sampling at a high temperature from a multilingual prompt makes the model emit CJK,
  // Cyrillic and accented pieces among ASCII; every message must be valid UTF-8 on its own
  // and the pieces must add up to the decoding of the tokens.
  const std::string prompt = "日本語のテキスト。中文文本。Ελληνικά. Русский текст. Café 😀🎉";
  int multibyte_runs = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    v1::GenerateRequest request = TextRequest(prompt, 48);
    request.mutable_stopping()->set_ignore_eos(true);
    request.mutable_sampling()->set_temperature(1.6f);
    request.mutable_sampling()->set_seed(seed * 7919 + 17);
    const Streamed s = RunStream(*stub_, request);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    for (const std::string& piece : s.pieces) EXPECT_TRUE(IsValidUtf8(piece)) << "seed " << seed;
    EXPECT_EQ(s.text, Detokenize(*stub_, s.tokens)) << "seed " << seed;
    bool multibyte = false;
    for (char c : s.text) multibyte |= (static_cast<unsigned char>(c) & 0x80) != 0;
    multibyte_runs += multibyte;
  }
  // Otherwise the test proved nothing about multi-byte text.
  EXPECT_GE(multibyte_runs, 1);
}

// A SentencePiece-style tokenizer.json (metaspace, byte fallback) for the tiny model's 512 ids:
// <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then letters, "▁x" pieces and
// two-letter pieces (with their merges) until every id has a token.
nlohmann::json ByteFallbackTokenizer(int vocab_size) {
  nlohmann::json vocab = nlohmann::json::object();
  nlohmann::json merges = nlohmann::json::array();
  int next = 0;
  for (const char* special : {"<unk>", "<s>", "</s>"}) vocab[special] = next++;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = next++;
  }
  const std::string space = "\xE2\x96\x81";  // ▁
  vocab[space] = next++;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = next++;
  for (char c = 'a'; c <= 'z'; ++c) {
    vocab[space + c] = next++;
    merges.push_back(space + " " + c);
  }
  for (char a = 'a'; a <= 'z' && next < vocab_size; ++a) {
    for (char b = 'a'; b <= 'z' && next < vocab_size; ++b) {
      vocab[std::string{a, b}] = next++;
      merges.push_back(std::string{a, ' ', b});
    }
  }
  nlohmann::json added = nlohmann::json::array();
  for (int id = 0; id < 3; ++id) {
    added.push_back({{"id", id},
                     {"content", id == 0   ? "<unk>"
                                 : id == 1 ? "<s>"
                                           : "</s>"},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", space}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<unk>"},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", merges}}}};
}

// Characters of `ids` that were emitted as 2-4 byte tokens forming one valid UTF-8 character.
int SplitCharacters(const std::vector<int32_t>& ids) {
  auto byte = [&](size_t i) { return ids[i] >= 3 && ids[i] < 259 ? ids[i] - 3 : -1; };
  int count = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int b = byte(i);
    const int n = b >= 0xC2 && b <= 0xDF   ? 1
                  : b >= 0xE0 && b <= 0xEF ? 2
                  : b >= 0xF0 && b <= 0xF4 ? 3
                                           : 0;
    if (n == 0 || i + n >= ids.size()) continue;
    std::string c(1, static_cast<char>(b));
    for (int k = 1; k <= n; ++k) c += static_cast<char>(byte(i + k) & 0xFF);
    bool bytes = true;
    for (int k = 1; k <= n; ++k) bytes &= byte(i + k) >= 0;
    if (bytes && IsValidUtf8(c)) {
      ++count;
      i += n;
    }
  }
  return count;
}

TEST(ByteFallbackStreamingTest, CharactersSplitOverTokensStreamAsValidUtf8) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(DSINFER_TEST_WORK_DIR) / "tiny-bytes";
  fs::create_directories(dir);
  for (const char* file : {"config.json", "model.safetensors"}) {
    fs::copy_file(fs::path(DSINFER_TEST_MODEL_DIR) / file, dir / file,
                  fs::copy_options::overwrite_existing);
  }
  std::ofstream(dir / "tokenizer.json") << ByteFallbackTokenizer(512).dump();
  ServerProcess server;
  std::string error;
  ASSERT_TRUE(server.Start({"--model", dir.string(), "--log-level", "warn"},
                           std::string(DSINFER_TEST_WORK_DIR) + "/bytes_test.port", &error))
      << error;
  auto stub = server.NewStub();
  std::mt19937_64 rng(std::random_device{}());
  int split = 0, messages = 0;
  // Each run of 200 sampled tokens holds about one split character; run until a few were seen
  // (at least 3 runs, at most 20) so that an unlucky draw cannot fail the test.
  for (int run = 0; run < 20 && (run < 3 || split < 3); ++run) {
    v1::GenerateRequest request = TextRequest("caf\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80", 200);
    request.mutable_stopping()->set_ignore_eos(true);
    request.mutable_sampling()->set_temperature(1.0f);
    request.mutable_sampling()->set_seed(rng());
    const Streamed s = RunStream(*stub, request);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    ASSERT_EQ(s.tokens.size(), 200u);
    for (const std::string& piece : s.pieces) {
      EXPECT_TRUE(IsValidUtf8(piece)) << "run " << run << ": a message cut a character";
    }
    EXPECT_EQ(s.text, Detokenize(*stub, s.tokens)) << "run " << run;
    if (run == 0) {
      EXPECT_EQ(s.text, RunUnary(*stub, request).text());
    }
    split += SplitCharacters(s.tokens);
    messages += static_cast<int>(s.pieces.size());
  }
  // Otherwise no character was ever split over tokens and the test proved nothing.
  EXPECT_GE(split, 3);
  RecordProperty("split_characters", split);
  RecordProperty("messages", messages);
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

}  // namespace
}  // namespace dsinfer::testing

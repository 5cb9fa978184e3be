// Behaviour of the tokenizer beyond the reference corpus: error reporting for bad input and
// malformed tokenizer.json files, streaming decode of characters split over several tokens,
// BOS/EOS configuration, and the BPE merge rules on a small hand-written vocabulary.
#include "engine/tokenizer/tokenizer.h"

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "engine/tokenizer/incremental_decoder.h"
#include "engine/tokenizer/regex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kDataDir = std::string(DSINFER_SOURCE_DIR) + "/tests/data/tokenizers/";

// A tiny SentencePiece-style tokenizer: byte fallback, Prepend/Replace normalizer.
nlohmann::json TinySpm() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int next = 3;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = next++;
  }
  for (const char* t : {"\xE2\x96\x81", "a", "b", "c", "ab", "bc",
                        "\xE2\x96\x81"
                        "a",
                        "aa", "aaa"}) {
    vocab[t] = next++;
  }
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true},
        {"vocab", vocab},
        // "a a" outranks "b c" outranks "a b": exercises ranks and the leftmost tie-break.
        {"merges", {"a a", "b c", "a b", "\xE2\x96\x81 a", "aa a"}}}},
  };
}

std::unique_ptr<Tokenizer> Load(const nlohmann::json& tokenizer, const std::string& config = "") {
  auto t = Tokenizer::LoadFromJson(tokenizer.dump(), config);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

absl::Status LoadError(const nlohmann::json& tokenizer) {
  return Tokenizer::LoadFromJson(tokenizer.dump(), "").status();
}

int32_t Id(const Tokenizer& t, const std::string& token) { return t.TokenToId(token).value_or(-1); }

TEST(TokenizerTest, TinyMergesFollowRankThenLeftmost) {
  auto t = Load(TinySpm());
  ASSERT_NE(t, nullptr);
  // "▁aaaa": "a a" (rank 0) applies first at the leftmost position, then again on the last two
  // a's: ▁ aa aa. "▁ a" and "aa a" then have no adjacent pair left to apply to.
  auto ids = t->Encode("aaaa", /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(Id(*t, "\xE2\x96\x81"), Id(*t, "aa"), Id(*t, "aa")));
  // "▁abc": "b c" (rank 1) beats "a b" (rank 2); then "▁ a" (rank 3) applies.
  ids = t->Encode("abc", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(Id(*t,
                                   "\xE2\x96\x81"
                                   "a"),
                                Id(*t, "bc")));
}

TEST(TokenizerTest, ByteFallbackAndBos) {
  auto t = Load(TinySpm());
  ASSERT_NE(t, nullptr);
  auto ids = t->Encode("é");  // U+00E9 = C3 A9, not in the vocabulary
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(1, Id(*t, "\xE2\x96\x81"), Id(*t, "<0xC3>"), Id(*t, "<0xA9>")));
  auto text = t->Decode(*ids, /*skip_special_tokens=*/true);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "é");
}

TEST(TokenizerTest, ConfigDecidesBosAndEos) {
  auto t = Load(TinySpm(), R"({"add_bos_token": false, "add_eos_token": true,
                                "bos_token": "<s>", "eos_token": {"content": "</s>"}})");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  auto ids = t->Encode("a");
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(Id(*t,
                                   "\xE2\x96\x81"
                                   "a"),
                                2));
}

TEST(TokenizerTest, InvalidUtf8IsRejected) {
  auto t = Load(TinySpm());
  ASSERT_NE(t, nullptr);
  for (const std::string& bad :
       {std::string("\x80"), std::string("ab\xC0\x80"), std::string("\xED\xA0\x80"),
        std::string("x\xE2\x82"), std::string("\xF5\x80\x80\x80"), std::string("\xFF")}) {
    auto ids = t->Encode(bad);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("not valid UTF-8"));
    EXPECT_THAT(ids.status().message(), HasSubstr("offset"));
  }
}

TEST(TokenizerTest, DecodeRejectsOutOfRangeIds) {
  auto t = Load(TinySpm());
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> ids = {1, static_cast<int32_t>(t->vocab_size())};
  auto text = t->Decode(ids);
  ASSERT_FALSE(text.ok());
  EXPECT_THAT(text.status().message(), HasSubstr("outside the vocabulary"));
  EXPECT_FALSE(t->Decode(std::vector<int32_t>{-1}).ok());
}

struct BadFile {
  std::string name;
  std::function<void(nlohmann::json*)> mutate;
  std::string expected_message;
};

TEST(TokenizerTest, MalformedFilesNameTheProblem) {
  const std::vector<BadFile> cases = {
      {"missing model", [](nlohmann::json* j) { j->erase("model"); }, "no \"model\""},
      {"unknown model type", [](nlohmann::json* j) { (*j)["model"]["type"] = "WordPiece"; },
       "unsupported model type \"WordPiece\""},
      {"merge token not in vocab",
       [](nlohmann::json* j) { (*j)["model"]["merges"].push_back("x y"); }, "not in model.vocab"},
      {"merge without space", [](nlohmann::json* j) { (*j)["model"]["merges"].push_back("ab"); },
       "model.merges[5]"},
      {"merge of wrong shape", [](nlohmann::json* j) { (*j)["model"]["merges"].push_back(7); },
       "model.merges[5]"},
      {"merges missing", [](nlohmann::json* j) { (*j)["model"].erase("merges"); }, "model.merges"},
      {"vocab missing", [](nlohmann::json* j) { (*j)["model"].erase("vocab"); }, "model.vocab"},
      {"vocab id not integer", [](nlohmann::json* j) { (*j)["model"]["vocab"]["zz"] = "x"; },
       "model.vocab[\"zz\"]"},
      {"unknown pre-tokenizer",
       [](nlohmann::json* j) {
         (*j)["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
       },
       "unsupported pre_tokenizer type \"BertPreTokenizer\""},
      {"unknown normalizer",
       [](nlohmann::json* j) {
         (*j)["normalizer"] = {{"type", "NFKC"}};
       },
       "unsupported normalizer type \"NFKC\""},
      {"unknown decoder",
       [](nlohmann::json* j) {
         (*j)["decoder"] = {{"type", "WordPiece"}};
       },
       "unsupported decoder type \"WordPiece\""},
      {"unknown post-processor",
       [](nlohmann::json* j) {
         (*j)["post_processor"] = {{"type", "BertProcessing"}};
       },
       "unsupported post_processor type \"BertProcessing\""},
      {"bad regex",
       [](nlohmann::json* j) {
         (*j)["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
       },
       "does not compile"},
      {"unknown split behavior",
       [](nlohmann::json* j) {
         (*j)["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}};
       },
       "unsupported behavior \"Sideways\""},
      {"template token missing",
       [](nlohmann::json* j) {
         (*j)["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>";
       },
       "\"<bos>\" is not in the vocabulary"},
      {"unk token missing", [](nlohmann::json* j) { (*j)["model"]["unk_token"] = "<oov>"; },
       "model.unk_token"},
  };
  for (const BadFile& c : cases) {
    nlohmann::json j = TinySpm();
    c.mutate(&j);
    absl::Status s = LoadError(j);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(c.expected_message)) << c.name;
  }
  EXPECT_THAT(Tokenizer::LoadFromJson("{not json", "").status().message(),
              HasSubstr("tokenizer.json is not valid JSON"));
  EXPECT_THAT(Tokenizer::LoadFromJson(TinySpm().dump(), "[1,").status().message(),
              HasSubstr("tokenizer_config.json is not valid JSON"));
  EXPECT_EQ(Tokenizer::LoadFromDir("/nonexistent/dir").status().code(),
            absl::StatusCode::kNotFound);
}

class RealTokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    spm_ = Tokenizer::LoadFromDir(kDataDir + "spm-bpe-32k")->release();
    llama3_ = Tokenizer::LoadFromDir(kDataDir + "llama3-bpe-128k")->release();
  }
  static void TearDownTestSuite() {
    delete spm_;
    delete llama3_;
  }
  static std::vector<std::string> Stream(const Tokenizer& t, const std::vector<int32_t>& ids) {
    IncrementalDecoder d(&t);
    std::vector<std::string> out;
    for (int32_t id : ids) out.push_back(*d.Push(id));
    out.push_back(*d.Flush());
    return out;
  }
  static Tokenizer* spm_;
  static Tokenizer* llama3_;
};
Tokenizer* RealTokenizerTest::spm_ = nullptr;
Tokenizer* RealTokenizerTest::llama3_ = nullptr;

TEST_F(RealTokenizerTest, Basics) {
  EXPECT_EQ(spm_->vocab_size(), 32000);
  EXPECT_EQ(spm_->bos_id(), 1);
  EXPECT_EQ(spm_->eos_id(), 2);
  EXPECT_EQ(spm_->TokenToId("\xE2\x96\x81the"), 272);
  EXPECT_EQ(llama3_->vocab_size(), 128256);
  EXPECT_EQ(llama3_->bos_id(), 128000);
  EXPECT_EQ(llama3_->eos_id(), 128001);
  EXPECT_EQ(llama3_->TokenToId("<|eot_id|>"), 128009);
  EXPECT_EQ(llama3_->TokenToId("\xC4\xA0the"), 279);  // "Ġthe"
  EXPECT_TRUE(llama3_->IsSpecial(128000));
  EXPECT_FALSE(llama3_->IsSpecial(279));
}

TEST_F(RealTokenizerTest, StreamingNeverSplitsAUtf8Character) {
  // SentencePiece: the emoji is four <0xNN> byte-fallback tokens.
  auto ids = spm_->Encode("a 🤗 b", /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  std::vector<std::string> pieces = Stream(*spm_, *ids);
  std::string joined;
  for (const std::string& p : pieces) {
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos) << "emitted a replacement character";
    joined += p;
  }
  EXPECT_EQ(joined, "a 🤗 b");
  EXPECT_EQ(pieces.front(), "a");  // the leading metaspace is stripped once, at the start
  // Byte-level: a rare CJK character spans several tokens.
  ids = llama3_->Encode("𪚥𩸽 ok", false);
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 3u);
  joined.clear();
  for (const std::string& p : Stream(*llama3_, *ids)) {
    EXPECT_EQ(p.find("\xEF\xBF\xBD"), std::string::npos);
    joined += p;
  }
  EXPECT_EQ(joined, "𪚥𩸽 ok");
}

TEST_F(RealTokenizerTest, StreamingKeepsSpacesBetweenWords) {
  auto ids = spm_->Encode("Hello big world", /*add_special_tokens=*/true);
  ASSERT_TRUE(ids.ok());
  IncrementalDecoder d(spm_, /*skip_special_tokens=*/true);
  std::string joined;
  for (int32_t id : *ids) joined += *d.Push(id);
  joined += *d.Flush();
  EXPECT_EQ(joined, "Hello big world");
}

TEST_F(RealTokenizerTest, StreamingFlushEmitsIncompleteBytes) {
  IncrementalDecoder d(spm_);
  auto first = d.Push(*spm_->TokenToId("<0xF0>"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "");
  EXPECT_EQ(*d.Flush(), "\xEF\xBF\xBD");
  EXPECT_FALSE(d.Push(-5).ok());
}

TEST_F(RealTokenizerTest, LongWordWithoutSpacesRoundTrips) {
  std::string word;
  uint32_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 1664525u + 1013904223u;
    word.push_back(static_cast<char>('a' + (state >> 24) % 26));
  }
  for (Tokenizer* t : {spm_, llama3_}) {
    auto ids = t->Encode(word, false);
    ASSERT_TRUE(ids.ok());
    EXPECT_LT(ids->size(), word.size());
    auto text = t->Decode(*ids);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, word);
  }
}

TEST(TokenizerRegexTest, JavaScriptEscapesAreRewritten) {
  auto p = TranslateRegexToPcre2("\\s+(?!\\S)|[^\\s\\p{L}]\\d");
  ASSERT_TRUE(p.ok());
  EXPECT_THAT(*p, HasSubstr("\\x{FEFF}"));
  EXPECT_EQ(p->find("\\x{85}"), std::string::npos);
  EXPECT_THAT(*p, HasSubstr("[0-9]"));
  auto re = TokenizerRegex::Compile("(?i:'s|'t|'re|'ve|'m|'ll|'d)|\\p{L}+");
  ASSERT_TRUE(re.ok());
  auto matches = (*re)->FindAll("it'S ok");
  ASSERT_TRUE(matches.ok());
  EXPECT_EQ(matches->size(), 3u);  // "it", "'S", "ok"
}

}  // namespace
}  // namespace dsinfer

// Exactness against an independent implementation: every string of
// tests/data/tokenizers/corpus.json is encoded with both real tokenizers (the 32K
// SentencePiece-BPE and Llama-3's 128K byte-level vocabulary) and compared id for id with what
// transformers.js produced (tests/tokenizer/make_expected.mjs). Decoding is compared too:
// decode(encode(x)) must give x wherever the reference round-trips, and the reference's text
// elsewhere; decoding with and without special tokens must match as well. Streaming through
// IncrementalDecoder must reproduce Decode exactly.
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "engine/tokenizer/incremental_decoder.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

const std::string kDataDir = std::string(DSINFER_SOURCE_DIR) + "/tests/data/tokenizers/";

std::string Escaped(const std::string& s) {
  std::string shown =
      nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return shown.size() > 160
             ? shown.substr(0, 160) + "...\" (" + std::to_string(s.size()) + " bytes)"
             : shown;
}

class ReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto tokenizer = Tokenizer::LoadFromDir(kDataDir + GetParam());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    auto corpus_text = ReadFile(kDataDir + "corpus.json");
    ASSERT_TRUE(corpus_text.ok()) << corpus_text.status();
    corpus_ = nlohmann::json::parse(*corpus_text, nullptr, false);
    ASSERT_TRUE(corpus_.is_array());
    auto expected_text = ReadFile(kDataDir + "expected_" + GetParam() + ".json");
    ASSERT_TRUE(expected_text.ok()) << expected_text.status();
    expected_ = nlohmann::json::parse(*expected_text, nullptr, false);
    ASSERT_TRUE(expected_.is_object());
    ASSERT_EQ(expected_["cases"].size(), corpus_.size());
  }

  std::vector<int32_t> PlainIds(const nlohmann::json& c) const {
    if (c.contains("plain")) return c["plain"].get<std::vector<int32_t>>();
    std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
    const size_t prefix = expected_["special_prefix"].size();
    const size_t suffix = expected_["special_suffix"].size();
    return std::vector<int32_t>(ids.begin() + prefix, ids.end() - suffix);
  }

  std::unique_ptr<Tokenizer> tokenizer_;
  nlohmann::json corpus_;
  nlohmann::json expected_;
};

TEST_P(ReferenceTest, CorpusIsLargeEnough) { EXPECT_GE(corpus_.size(), 300u); }

TEST_P(ReferenceTest, EncodeMatchesReferenceIds) {
  int mismatches = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const std::string text = corpus_[i].get<std::string>();
    const nlohmann::json& c = expected_["cases"][i];
    auto ids = tokenizer_->Encode(text, /*add_special_tokens=*/true);
    ASSERT_TRUE(ids.ok()) << ids.status() << " for " << Escaped(text);
    if (*ids != c["ids"].get<std::vector<int32_t>>()) {
      ++mismatches;
      ADD_FAILURE() << "case " << i << " " << Escaped(text) << "\n  got      "
                    << nlohmann::json(*ids).dump() << "\n  expected " << c["ids"].dump();
    }
    auto plain = tokenizer_->Encode(text, /*add_special_tokens=*/false);
    ASSERT_TRUE(plain.ok()) << plain.status();
    EXPECT_EQ(*plain, PlainIds(c)) << "case " << i << " without special tokens " << Escaped(text);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(ReferenceTest, DecodeMatchesReference) {
  int roundtrips = 0;
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const std::string text = corpus_[i].get<std::string>();
    const nlohmann::json& c = expected_["cases"][i];
    const std::vector<int32_t> plain = PlainIds(c);
    auto decoded = tokenizer_->Decode(plain);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    if (c.value("roundtrip", false)) {
      ++roundtrips;
      EXPECT_EQ(*decoded, text) << "case " << i << " should round-trip";
    } else {
      EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << "case " << i << " " << Escaped(text);
    }
    if (c.contains("with_special")) {
      const std::vector<int32_t> ids = c["ids"].get<std::vector<int32_t>>();
      auto with = tokenizer_->Decode(ids, /*skip_special_tokens=*/false);
      auto skip = tokenizer_->Decode(ids, /*skip_special_tokens=*/true);
      ASSERT_TRUE(with.ok() && skip.ok());
      EXPECT_EQ(*with, c["with_special"].get<std::string>())
          << "case " << i << " " << Escaped(text);
      EXPECT_EQ(*skip, c["skip_special"].get<std::string>())
          << "case " << i << " " << Escaped(text);
    }
  }
  EXPECT_GT(roundtrips, static_cast<int>(corpus_.size()) * 9 / 10);
}

TEST_P(ReferenceTest, IncrementalDecodeEqualsDecode) {
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const std::vector<int32_t> ids = expected_["cases"][i]["ids"].get<std::vector<int32_t>>();
    for (bool skip : {false, true}) {
      auto full = tokenizer_->Decode(ids, skip);
      ASSERT_TRUE(full.ok());
      IncrementalDecoder stream(tokenizer_.get(), skip);
      std::string joined;
      for (int32_t id : ids) {
        auto piece = stream.Push(id);
        ASSERT_TRUE(piece.ok()) << piece.status() << " case " << i;
        joined += *piece;
      }
      auto rest = stream.Flush();
      ASSERT_TRUE(rest.ok());
      joined += *rest;
      EXPECT_EQ(joined, *full) << "case " << i << " skip_special=" << skip;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(RealTokenizers, ReferenceTest,
                         ::testing::Values("spm-bpe-32k", "llama3-bpe-128k"), [](const auto& info) {
                           return info.param == "spm-bpe-32k" ? std::string("SpmBpe32k")
                                                              : std::string("Llama3Bpe128k");
                         });

}  // namespace
}  // namespace dsinfer

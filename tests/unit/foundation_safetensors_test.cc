// Proves safetensors loading and weight binding: files written by checkpoint_writer read back
// bit-exactly (single and sharded); every malformed header or file — truncated anywhere,
// offsets outside the data, overlapping tensors, shape/byte-size mismatch, unknown dtype,
// malformed entries, shard index problems — is an error naming the file and the tensor, never
// a crash (including random header corruption); and BindModelWeights refuses missing,
// unexpected, wrongly shaped and i32 tensors, and handles tied embeddings with or without an
// lm_head tensor. Checkpoints are built in a temp dir with WriteSafetensors/WriteRandomModel.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/checkpoint_writer.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/weights.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

std::string MakeDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/foundation_safetensors_" +
      std::to_string(::getpid()) + "_" + name;
  EXPECT_EQ(std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str()), 0);
  return dir;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Writes a safetensors file with a hand-made header and `data_bytes` bytes of data.
void WriteRaw(const std::string& path, const std::string& header, size_t data_bytes) {
  std::string bytes(8, '\0');
  const uint64_t len = header.size();
  std::memcpy(bytes.data(), &len, 8);
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<char>(i * 37 + 11));
  WriteAll(path, bytes);
}

SafetensorsEntry Entry(const std::string& name, DType dtype, std::vector<int64_t> shape,
                       uint32_t seed) {
  SafetensorsEntry e{name, dtype, std::move(shape), {}};
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  e.data.resize(static_cast<size_t>(n) * DTypeSize(dtype));
  std::mt19937 rng(seed);
  for (uint8_t& b : e.data) b = static_cast<uint8_t>(rng());
  return e;
}

std::vector<SafetensorsEntry> MixedEntries() {
  return {Entry("a.f32", DType::kF32, {3, 5}, 1), Entry("b.bf16", DType::kBF16, {7}, 2),
          Entry("c.f16", DType::kF16, {2, 3, 4}, 3), Entry("d.i32", DType::kI32, {6}, 4),
          Entry("e.scalar", DType::kF32, {}, 5), Entry("f.empty", DType::kBF16, {0, 4}, 6)};
}

// Expects `s` to be INVALID_ARGUMENT-ish with a message naming every string in `needles`.
template <typename T>
void ExpectError(const absl::StatusOr<T>& s, std::vector<std::string> needles) {
  ASSERT_FALSE(s.ok()) << "expected an error naming " << needles[0];
  for (const std::string& n : needles) {
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(n)) << s.status();
  }
}

TEST(SafetensorsTest, RoundTripsEveryDtype) {
  const std::string dir = MakeDir("roundtrip");
  const std::string path = dir + "/x.safetensors";
  const std::vector<SafetensorsEntry> entries = MixedEntries();
  ASSERT_TRUE(WriteSafetensors(path, entries).ok());
  auto ckpt = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_EQ((*ckpt)->tensors().size(), entries.size());
  for (const SafetensorsEntry& e : entries) {
    auto t = (*ckpt)->Find(e.name);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->name, e.name);
    EXPECT_EQ((*t)->file, path);
    EXPECT_EQ((*t)->dtype, e.dtype);
    EXPECT_EQ((*t)->shape, e.shape);
    EXPECT_EQ((*t)->bytes, static_cast<int64_t>(e.data.size()));
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    EXPECT_EQ((*t)->NumElements(), n);
    if (!e.data.empty()) {
      EXPECT_EQ(std::memcmp((*t)->data, e.data.data(), e.data.size()), 0);
    }
  }
  auto missing = (*ckpt)->Find("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope"));
}

TEST(SafetensorsTest, OpenDirFindsSingleFileOrReportsNothing) {
  const std::string dir = MakeDir("opendir");
  auto none = SafetensorsCheckpoint::OpenDir(dir);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr(dir));
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", MixedEntries()).ok());
  auto ckpt = SafetensorsCheckpoint::OpenDir(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->tensors().size(), 6u);
}

TEST(SafetensorsTest, EveryTruncationIsAnErrorNamingTheFile) {
  const std::string dir = MakeDir("truncate");
  const std::string good = dir + "/good.safetensors";
  ASSERT_TRUE(WriteSafetensors(good, MixedEntries()).ok());
  const std::string bytes = ReadAll(good);
  const std::string path = dir + "/cut.safetensors";
  // Every length inside the 8-byte prefix and the last 24 bytes, and every 5th elsewhere.
  for (size_t len = 0; len < bytes.size(); len += (len < 8 || len + 24 >= bytes.size()) ? 1 : 5) {
    WriteAll(path, bytes.substr(0, len));
    auto ckpt = SafetensorsCheckpoint::OpenFile(path);
    ASSERT_FALSE(ckpt.ok()) << "prefix of " << len << " bytes opened";
    EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(path)) << len;
  }
  // Cutting into the data section names the tensor that no longer fits.
  WriteAll(path, bytes.substr(0, bytes.size() - 1));
  ExpectError(SafetensorsCheckpoint::OpenFile(path), {path, "e.scalar", "truncated"});
}

TEST(SafetensorsTest, HeaderLengthBeyondFile) {
  const std::string dir = MakeDir("headerlen");
  const std::string path = dir + "/x.safetensors";
  std::string bytes(8, '\0');
  const uint64_t huge = ~uint64_t{0};
  std::memcpy(bytes.data(), &huge, 8);
  bytes += "{}";
  WriteAll(path, bytes);
  ExpectError(SafetensorsCheckpoint::OpenFile(path), {path, "header length"});
  WriteRaw(path, "{\"a\": ", 0);
  ExpectError(SafetensorsCheckpoint::OpenFile(path), {path, "JSON"});
  WriteRaw(path, "[1, 2]", 0);
  ExpectError(SafetensorsCheckpoint::OpenFile(path), {path, "JSON object"});
}

TEST(SafetensorsTest, MalformedEntriesNameFileAndTensor) {
  const std::string dir = MakeDir("malformed");
  const std::string path = dir + "/x.safetensors";
  struct Case {
    std::string header;
    size_t data;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {R"({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]}})", 16, {"'w'", "F64"}},
      {R"({"w": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}})", 8, {"'w'", "Q4"}},
      {R"({"w": {"dtype": 7, "shape": [2], "data_offsets": [0, 8]}})", 8, {"'w'", "dtype"}},
      {R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8, {"'w'", "12", "8"}},
      {R"({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 16]}})", 16,
       {"'w'", "bytes"}},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 9]}})", 8, {"'w'", "outside"}},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", 8, {"'w'", "outside"}},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [100, 108]}})", 8, {"'w'"}},
      {R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8, {"'w'", "dimension"}},
      {R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8, {"'w'", "dimension"}},
      {R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", 8, {"'w'", "shape"}},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8, {"'w'", "data_offsets"}},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8, {"'w'", "data_offsets"}},
      {R"({"w": {"dtype": "F32", "shape": [2]}})", 8, {"'w'", "data_offsets"}},
      {R"({"w": [1, 2, 3]})", 8, {"'w'"}},
      {R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 8]}})",
       8, {"'w'", "large"}},
      // Two tensors sharing bytes.
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
       16, {"'a'", "'b'", "overlap"}},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
       8, {"overlap"}},
  };
  for (const Case& c : cases) {
    WriteRaw(path, c.header, c.data);
    auto ckpt = SafetensorsCheckpoint::OpenFile(path);
    std::vector<std::string> needles = c.needles;
    needles.push_back(path);
    SCOPED_TRACE(c.header);
    ExpectError(ckpt, needles);
  }
}

TEST(SafetensorsTest, OverlapIsFoundEvenAcrossAnEmptyTensor) {
  // 'big' spans [0, 32); the empty 'gap' sits at 8 and 'inner' at [16, 24) inside 'big'.
  // Comparing only sorted neighbours would be fooled by the empty tensor between them.
  const std::string dir = MakeDir("overlap_empty");
  const std::string path = dir + "/x.safetensors";
  WriteRaw(path,
           R"({"big": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]},
               "gap": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
               "inner": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})",
           32);
  ExpectError(SafetensorsCheckpoint::OpenFile(path), {path, "overlap", "'inner'"});
}

TEST(SafetensorsTest, AdjacentAndEmptyTensorsAreFine) {
  const std::string dir = MakeDir("adjacent");
  const std::string path = dir + "/x.safetensors";
  WriteRaw(path,
           R"({"__metadata__": {"format": "pt"},
               "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
               "e": {"dtype": "F16", "shape": [0], "data_offsets": [8, 8]},
               "b": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}})",
           24);  // trailing unused bytes are allowed
  auto ckpt = SafetensorsCheckpoint::OpenFile(path);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->tensors().size(), 3u);
}

TEST(SafetensorsTest, RandomHeaderCorruptionNeverCrashes) {
  const std::string dir = MakeDir("fuzz");
  const std::string good = dir + "/good.safetensors";
  ASSERT_TRUE(WriteSafetensors(good, MixedEntries()).ok());
  const std::string bytes = ReadAll(good);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const std::string path = dir + "/bad.safetensors";
  std::mt19937 rng(31337);
  const std::string alphabet = "0123456789[]{}\",:-. eE\x01\xff";
  int opened = 0, failed = 0;
  for (int iter = 0; iter < 150; ++iter) {
    std::string b = bytes;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = 8 + rng() % header_len;
      b[pos] = alphabet[rng() % alphabet.size()];
    }
    WriteAll(path, b);
    auto ckpt = SafetensorsCheckpoint::OpenFile(path);
    if (!ckpt.ok()) {
      ++failed;
      EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(path));
      continue;
    }
    ++opened;
    // Whatever opened must be internally consistent.
    for (const auto& [name, t] : (*ckpt)->tensors()) {
      EXPECT_EQ(t.bytes, t.NumElements() * static_cast<int64_t>(DTypeSize(t.dtype))) << name;
    }
  }
  EXPECT_GT(failed, 0);
}

// ---------------------------------------------------------------- sharded checkpoints

ModelConfig TinyConfig(bool tied) {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads_q = 4;
  c.num_heads_kv = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  c.tie_word_embeddings = tied;
  return c;
}

// Writes `entries` split over `shards` files plus model.safetensors.index.json; `edit` may
// change the index's weight_map before it is written.
void WriteSharded(const std::string& dir, const std::vector<SafetensorsEntry>& entries, int shards,
                  const std::function<void(nlohmann::json&)>& edit = nullptr) {
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (int s = 0; s < shards; ++s) {
    std::vector<SafetensorsEntry> part;
    const std::string name =
        "model-0000" + std::to_string(s + 1) + "-of-0000" + std::to_string(shards) + ".safetensors";
    for (size_t i = s; i < entries.size(); i += shards) {
      part.push_back(entries[i]);
      index["weight_map"][entries[i].name] = name;
    }
    ASSERT_TRUE(WriteSafetensors(dir + "/" + name, part).ok());
  }
  if (edit) edit(index);
  WriteAll(dir + "/model.safetensors.index.json", index.dump(2));
}

TEST(SafetensorsShardTest, ShardedEqualsSingle) {
  const ModelConfig c = TinyConfig(false);
  const std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 9, 0.1f, DType::kBF16);
  const std::string dir = MakeDir("sharded");
  WriteSharded(dir, entries, 3);
  // A stray single-file checkpoint must not be used when an index exists.
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", {Entry("junk", DType::kF32, {1}, 1)}).ok());
  auto ckpt = SafetensorsCheckpoint::OpenDir(dir);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ASSERT_EQ((*ckpt)->tensors().size(), entries.size());
  for (const SafetensorsEntry& e : entries) {
    auto t = (*ckpt)->Find(e.name);
    ASSERT_TRUE(t.ok()) << e.name;
    EXPECT_EQ((*t)->shape, e.shape);
    EXPECT_EQ(std::memcmp((*t)->data, e.data.data(), e.data.size()), 0) << e.name;
    EXPECT_THAT((*t)->file, HasSubstr("-of-00003.safetensors"));
  }
  std::remove((dir + "/model.safetensors").c_str());
  auto weights = LoadModelWeights(c, dir);
  ASSERT_TRUE(weights.ok()) << weights.status();
  EXPECT_EQ(weights->layers.size(), 2u);
}

TEST(SafetensorsShardTest, IndexProblemsNamed) {
  const ModelConfig c = TinyConfig(false);
  const std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 9, 0.1f, DType::kBF16);
  const std::string shard1 = "model-00001-of-00002.safetensors";
  {
    // Tensor listed in the index but absent from its shard.
    const std::string dir = MakeDir("idx_missing");
    WriteSharded(dir, entries, 2, [&](nlohmann::json& j) { j["weight_map"]["ghost.weight"] = shard1; });
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"ghost.weight", shard1});
  }
  {
    // Tensor present in a shard but not listed for it.
    const std::string dir = MakeDir("idx_unlisted");
    WriteSharded(dir, entries, 2,
                 [&](nlohmann::json& j) { j["weight_map"].erase("model.norm.weight"); });
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"model.norm.weight", "index"});
  }
  {
    // Shard file missing.
    const std::string dir = MakeDir("idx_noshard");
    WriteSharded(dir, entries, 2);
    std::remove((dir + "/" + shard1).c_str());
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {shard1});
  }
  {
    // A tensor in two shards (the index lists it for the first only).
    const std::string dir = MakeDir("idx_dup");
    WriteSharded(dir, entries, 2);
    std::vector<SafetensorsEntry> part;
    for (size_t i = 1; i < entries.size(); i += 2) part.push_back(entries[i]);
    part.push_back(entries[0]);  // entries[0] lives in shard 1
    ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", part).ok());
    ExpectError(SafetensorsCheckpoint::OpenDir(dir),
                {entries[0].name, "model-00002-of-00002.safetensors"});
  }
  {
    const std::string dir = MakeDir("idx_badname");
    WriteSharded(dir, entries, 2, [&](nlohmann::json& j) {
      j["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
    });
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"../elsewhere.safetensors", "index.json"});
  }
  {
    const std::string dir = MakeDir("idx_notstring");
    WriteSharded(dir, entries, 2, [&](nlohmann::json& j) { j["weight_map"]["model.norm.weight"] = 3; });
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"model.norm.weight", "index.json"});
  }
  {
    const std::string dir = MakeDir("idx_nomap");
    WriteSharded(dir, entries, 2, [&](nlohmann::json& j) { j.erase("weight_map"); });
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"weight_map", "index.json"});
  }
  {
    const std::string dir = MakeDir("idx_notjson");
    WriteSharded(dir, entries, 2);
    WriteAll(dir + "/model.safetensors.index.json", "{\"weight_map\": {");
    ExpectError(SafetensorsCheckpoint::OpenDir(dir), {"index.json"});
  }
}

// ---------------------------------------------------------------- weights binding

std::unique_ptr<SafetensorsCheckpoint> Checkpoint(const std::string& name,
                                                  const std::vector<SafetensorsEntry>& entries) {
  const std::string path = MakeDir(name) + "/model.safetensors";
  EXPECT_TRUE(WriteSafetensors(path, entries).ok());
  auto ckpt = SafetensorsCheckpoint::OpenFile(path);
  EXPECT_TRUE(ckpt.ok()) << ckpt.status();
  return std::move(*ckpt);
}

std::vector<SafetensorsEntry> Without(std::vector<SafetensorsEntry> entries, const std::string& name) {
  entries.erase(std::remove_if(entries.begin(), entries.end(),
                               [&](const SafetensorsEntry& e) { return e.name == name; }),
                entries.end());
  return entries;
}

TEST(WeightsTest, BindsEveryTensorWithExpectedShapes) {
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    const ModelConfig c = TinyConfig(false);
    auto w = BindModelWeights(c, Checkpoint("w_ok", RandomLlamaWeights(c, 3, 0.1f, dtype)));
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_EQ(w->layers.size(), 2u);
    EXPECT_EQ(w->embed_tokens->shape, std::vector<int64_t>({64, 32}));
    EXPECT_EQ(w->lm_head->shape, std::vector<int64_t>({64, 32}));
    EXPECT_NE(w->lm_head, w->embed_tokens);
    EXPECT_EQ(w->layers[1].q_proj->shape, std::vector<int64_t>({32, 32}));
    EXPECT_EQ(w->layers[1].k_proj->shape, std::vector<int64_t>({16, 32}));
    EXPECT_EQ(w->layers[1].o_proj->shape, std::vector<int64_t>({32, 32}));
    EXPECT_EQ(w->layers[0].down_proj->shape, std::vector<int64_t>({32, 48}));
    EXPECT_EQ(w->layers[0].gate_proj->dtype, dtype);
    EXPECT_NE(w->checkpoint, nullptr);
  }
}

TEST(WeightsTest, MissingTensorNamed) {
  const ModelConfig c = TinyConfig(false);
  for (const char* name : {"model.layers.1.self_attn.k_proj.weight", "model.norm.weight",
                           "model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"}) {
    auto w = BindModelWeights(c, Checkpoint("w_missing", Without(RandomLlamaWeights(c, 3, 0.1f, DType::kBF16), name)));
    ExpectError(w, {name});
  }
  auto w = BindModelWeights(c, Checkpoint("w_nohead", Without(RandomLlamaWeights(c, 3, 0.1f, DType::kBF16), "lm_head.weight")));
  ExpectError(w, {"lm_head.weight", "tie_word_embeddings"});
}

TEST(WeightsTest, UnexpectedTensorNamedButInvFreqTolerated) {
  const ModelConfig c = TinyConfig(false);
  std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 3, 0.1f, DType::kBF16);
  entries.push_back(Entry("model.layers.0.self_attn.rotary_emb.inv_freq", DType::kF32, {4}, 7));
  auto w = BindModelWeights(c, Checkpoint("w_invfreq", entries));
  ASSERT_TRUE(w.ok()) << w.status();
  entries.push_back(Entry("model.layers.0.self_attn.q_proj.bias", DType::kBF16, {32}, 8));
  w = BindModelWeights(c, Checkpoint("w_unexpected", entries));
  ExpectError(w, {"model.layers.0.self_attn.q_proj.bias", "unexpected", "model.safetensors"});
  // A checkpoint with more layers than the config.
  ModelConfig three = c;
  three.num_layers = 3;
  w = BindModelWeights(c, Checkpoint("w_layers", RandomLlamaWeights(three, 3, 0.1f, DType::kBF16)));
  ExpectError(w, {"model.layers.2."});
}

TEST(WeightsTest, WrongShapeNamesTensorAndBothShapes) {
  const ModelConfig c = TinyConfig(false);
  std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 3, 0.1f, DType::kBF16);
  for (SafetensorsEntry& e : entries) {
    if (e.name == "model.layers.1.self_attn.v_proj.weight") {
      e = Entry(e.name, DType::kBF16, {32, 32}, 9);  // MHA shape in a GQA model
    }
  }
  auto w = BindModelWeights(c, Checkpoint("w_shape", entries));
  ExpectError(w, {"model.layers.1.self_attn.v_proj.weight", "[32, 32]", "[16, 32]",
                  "model.safetensors"});
  // Transposed matrix.
  entries = RandomLlamaWeights(c, 3, 0.1f, DType::kBF16);
  for (SafetensorsEntry& e : entries) {
    if (e.name == "model.layers.0.mlp.down_proj.weight") {
      e = Entry(e.name, DType::kBF16, {48, 32}, 9);
    }
  }
  ExpectError(BindModelWeights(c, Checkpoint("w_transposed", entries)),
              {"model.layers.0.mlp.down_proj.weight", "[48, 32]"});
}

TEST(WeightsTest, I32WeightRefused) {
  const ModelConfig c = TinyConfig(false);
  std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 3, 0.1f, DType::kBF16);
  for (SafetensorsEntry& e : entries) {
    if (e.name == "model.layers.0.input_layernorm.weight") {
      e = Entry(e.name, DType::kI32, {32}, 9);
    }
  }
  ExpectError(BindModelWeights(c, Checkpoint("w_i32", entries)),
              {"model.layers.0.input_layernorm.weight", "i32"});
}

TEST(WeightsTest, TiedEmbeddings) {
  const ModelConfig c = TinyConfig(true);
  std::vector<SafetensorsEntry> entries = RandomLlamaWeights(c, 3, 0.1f, DType::kBF16);
  for (const SafetensorsEntry& e : entries) EXPECT_NE(e.name, "lm_head.weight");
  auto w = BindModelWeights(c, Checkpoint("w_tied", entries));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->lm_head, w->embed_tokens);
  // Some exports write the tied head anyway: accepted when its shape is right...
  entries.push_back(Entry("lm_head.weight", DType::kBF16, {64, 32}, 4));
  w = BindModelWeights(c, Checkpoint("w_tied_head", entries));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->lm_head, w->embed_tokens);
  // ...and refused when it is not.
  entries.back() = Entry("lm_head.weight", DType::kBF16, {63, 32}, 4);
  ExpectError(BindModelWeights(c, Checkpoint("w_tied_badhead", entries)), {"lm_head.weight"});
}

TEST(CheckpointWriterTest, RandomModelIsDeterministicAndLoads) {
  ModelConfig c = TinyConfig(true);
  c.rope.type = RopeParams::Type::kLlama3;
  c.rope.original_max_position_embeddings = 32;
  const std::string a = MakeDir("gen_a"), b = MakeDir("gen_b"), d = MakeDir("gen_d");
  ASSERT_TRUE(WriteRandomModel(a, c, 77).ok());
  ASSERT_TRUE(WriteRandomModel(b, c, 77).ok());
  ASSERT_TRUE(WriteRandomModel(d, c, 78).ok());
  EXPECT_EQ(ReadAll(a + "/model.safetensors"), ReadAll(b + "/model.safetensors"));
  EXPECT_EQ(ReadAll(a + "/config.json"), ReadAll(b + "/config.json"));
  EXPECT_NE(ReadAll(a + "/model.safetensors"), ReadAll(d + "/model.safetensors"));
  auto config = LoadModelConfig(a);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope.type, RopeParams::Type::kLlama3);
  auto w = LoadModelWeights(*config, a);
  ASSERT_TRUE(w.ok()) << w.status();
  // Norm weights are drawn around 1, matrices around 0; both are not constant.
  std::vector<float> norm(32), embed(64 * 32);
  ASSERT_TRUE(ConvertToF32(DType::kBF16, w->final_norm->data, 32, norm.data()).ok());
  ASSERT_TRUE(ConvertToF32(DType::kBF16, w->embed_tokens->data, embed.size(), embed.data()).ok());
  double norm_mean = 0, embed_mean = 0, embed_sq = 0;
  for (float v : norm) norm_mean += v / 32.0;
  for (float v : embed) {
    embed_mean += v / embed.size();
    embed_sq += static_cast<double>(v) * v / embed.size();
  }
  EXPECT_NEAR(norm_mean, 1.0, 0.1);
  EXPECT_NEAR(embed_mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(embed_sq), 0.08, 0.01);  // the default std
  // Invalid configs are refused before anything is written.
  ModelConfig bad = c;
  bad.num_heads_kv = 3;
  EXPECT_FALSE(WriteRandomModel(MakeDir("gen_bad"), bad, 1).ok());
}

}  // namespace
}  // namespace dsinfer

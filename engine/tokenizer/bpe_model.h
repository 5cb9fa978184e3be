// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): a vocabulary, a ranked
// list of merges, and the unknown-token / byte-fallback rules.
//
// Encoding one piece is the classic heap-driven merge over a linked list of symbols: every
// adjacent pair with a merge rule sits in a min-heap keyed by (rank, position); popping the
// best pair merges it in place and pushes the (at most two) new neighbour pairs. That is
// O(n log n) in the piece length, so a 1 MB piece with no spaces (which SentencePiece-style
// tokenizers hand over whole) costs well under a second. Ties in rank go to the leftmost pair,
// exactly as in Hugging Face tokenizers and transformers.js. Stale heap entries are detected
// by re-checking the two symbol ids: a symbol that grew has a different (longer) token.
//
// Byte-level models (GPT-2 / Llama-3 style) have their vocabulary converted from the
// byte-level alphabet to raw bytes at load time; their pieces are then merged starting from
// single bytes. Other models start from single code points.
#ifndef DSINFER_ENGINE_TOKENIZER_BPE_MODEL_H_
#define DSINFER_ENGINE_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class BpeModel {
 public:
  // Builds the model from tokenizer.json's "model" object. `byte_level` converts the
  // vocabulary from GPT-2's byte alphabet to raw bytes. Errors (INVALID_ARGUMENT) name the
  // offending field: a missing or non-BPE type, a vocabulary entry that is not
  // string -> integer, a merge that is not two tokens of the vocabulary, a merge whose result
  // is missing from the vocabulary.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model,
                                                            bool byte_level);

  // Appends the ids of `piece` (valid UTF-8; raw bytes for a byte-level model) to `ids`.
  // Fails only when a symbol is not in the vocabulary and the model has neither a usable
  // byte fallback nor an unk_token; `ids` may then hold a partial result.
  absl::Status Encode(std::string_view piece, std::vector<int32_t>* ids) const;

  // The vocabulary id of `token` (in the model's own spelling: raw bytes when byte-level).
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The model's spelling of `id`, or nullptr when no vocabulary entry has that id.
  const std::string* IdToToken(int32_t id) const;

  // One more than the largest id of the vocabulary.
  int64_t size() const { return static_cast<int64_t>(id_to_token_.size()); }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  bool fuse_unk() const { return fuse_unk_; }
  bool byte_level() const { return byte_level_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;  // the merged token
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  // Runs the merge loop over one word and appends its ids.
  absl::Status EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;
  // Emits the ids for a symbol that is not in the vocabulary (byte fallback or unk).
  absl::Status EmitUnknown(std::string_view symbol, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> id_present_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};              // raw byte / ASCII char -> id (-1: none)
  absl::flat_hash_map<uint32_t, int32_t> char_ids_;  // non-ASCII code point -> id
  std::array<int32_t, 256> byte_fallback_ids_{};     // "<0xNN>" -> id (-1: none)
  std::optional<int32_t> unk_id_;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  // No merge joins a token ending in a non-"▁" character to one starting with "▁" (true of
  // SentencePiece vocabularies), so a piece can be cut before each such "▁" without changing
  // the result. SentencePiece-style files have no pre-tokenizer and hand over the whole text
  // as one piece; cutting it into words keeps the heap small and cache-resident.
  bool split_at_metaspace_ = false;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_BPE_MODEL_H_

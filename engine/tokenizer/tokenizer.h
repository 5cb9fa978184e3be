// The public tokenizer: Hugging Face tokenizer.json (+ tokenizer_config.json) with a BPE model,
// in the two flavours Llama-family models use — SentencePiece-style (Prepend/Replace
// normalizer, byte fallback to "<0xNN>" tokens) and byte-level (Llama-3's Split regex +
// ByteLevel). Ids match transformers.js (the reference the tests were generated with) exactly.
//
// Encode pipeline, per call: validate UTF-8 -> cut out added tokens -> for each plain section:
// normalizer -> pre-tokenizer -> BPE model (-> fuse unk) -> post-processor (BOS/EOS).
// Decode: ids -> token strings -> decoder chain. Neither applies transformers' optional
// clean_up_tokenization_spaces: Decode returns the exact text the tokens stand for, which is
// what streaming needs (see IncrementalDecoder).
//
// BOS/EOS: when tokenizer_config.json sets add_bos_token / add_eos_token they decide (as the
// Llama tokenizer classes of transformers do); otherwise tokenizer.json's post_processor
// (TemplateProcessing single template) does; ByteLevel and null post-processors add nothing.
//
// A Tokenizer is immutable after loading; all methods are const and thread-safe.
#ifndef DSINFER_ENGINE_TOKENIZER_TOKENIZER_H_
#define DSINFER_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer/added_tokens.h"
#include "engine/tokenizer/bpe_model.h"
#include "engine/tokenizer/decoder.h"
#include "engine/tokenizer/normalizer.h"
#include "engine/tokenizer/pre_tokenizer.h"

namespace dsinfer {

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json. NOT_FOUND when
  // tokenizer.json is missing (a model directory may legitimately have none); other errors
  // as LoadFromJson.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromDir(const std::string& dir);

  // Builds a tokenizer from the text of tokenizer.json and of tokenizer_config.json ("" when
  // there is none). INVALID_ARGUMENT names what is wrong: JSON that does not parse, a missing
  // "model", bad merges, an unknown model / normalizer / pre-tokenizer / decoder /
  // post-processor type, a special token the vocabulary lacks.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromJson(const std::string& tokenizer_json,
                                                                 const std::string& config_json);

  // Token ids of `text`. `add_special_tokens` adds BOS/EOS as configured (see above); added
  // tokens written in the text ("<s>", "<|eot_id|>") are always recognised. INVALID_ARGUMENT
  // when `text` is not valid UTF-8 (the message gives the byte offset).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              bool add_special_tokens = true) const;

  // The text of `ids`. `skip_special_tokens` drops special added tokens (BOS, EOS, ...).
  // INVALID_ARGUMENT for an id outside [0, vocab_size()). Byte sequences that are not valid
  // UTF-8 come out as U+FFFD.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special_tokens = false) const;

  // One more than the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const { return vocab_size_; }
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  // The id of a token given in its tokenizer.json spelling ("▁the", "Ġthe", "<s>").
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // Whether `id` is a special added token (skipped by skip_special_tokens).
  bool IsSpecial(int32_t id) const;

 private:
  Tokenizer() = default;
  absl::Status EncodeSection(std::string_view text, int section_index,
                             std::vector<int32_t>* ids) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_tokens_;
  AddedTokenSplitter splitter_;
  absl::flat_hash_map<int32_t, const AddedToken*> added_by_id_;
  std::vector<bool> special_;
  std::vector<int32_t> prefix_ids_;  // added before the text when add_special_tokens
  std::vector<int32_t> suffix_ids_;  // ... and after it
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  int64_t vocab_size_ = 0;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_TOKENIZER_H_

// Added tokens (tokenizer.json "added_tokens"): strings such as "<s>" or "<|eot_id|>" that are
// cut out of the input before normalization and map to one id each. The splitter scans left
// to right and takes the longest added token starting at each position, the rule of the
// reference (a trie walk there; here a first-byte index over candidates sorted by length,
// which is as fast for the few hundred tokens real files have). Matching is on the raw text;
// the "normalized" and "single_word" flags are not applied, as in the reference.
#ifndef DSINFER_ENGINE_TOKENIZER_ADDED_TOKENS_H_
#define DSINFER_ENGINE_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsinfer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;  // strip whitespace from the text on its left
  bool rstrip = false;  // ... and on its right
};

// One stretch of input: either plain text (token == nullptr) or one added token.
struct Section {
  std::string_view text;
  const AddedToken* token = nullptr;
};

class AddedTokenSplitter {
 public:
  AddedTokenSplitter() = default;
  // `tokens` must outlive the splitter; empty contents are ignored.
  explicit AddedTokenSplitter(const std::vector<AddedToken>* tokens);

  // Splits `text` into sections (plain text and added tokens, in order; plain sections are
  // never empty here) and then applies lstrip/rstrip, which can leave plain sections empty.
  std::vector<Section> Split(std::string_view text) const;

 private:
  const std::vector<AddedToken>* tokens_ = nullptr;
  // For each first byte, indices into *tokens_ sorted by decreasing length.
  std::array<std::vector<int>, 256> by_first_byte_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKENIZER_ADDED_TOKENS_H_

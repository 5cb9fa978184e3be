// Whitespace for lstrip/rstrip is JavaScript's (String.trimEnd/trimStart in the reference).
#include "engine/tokenizer/added_tokens.h"

#include <algorithm>

#include "engine/tokenizer/utf8.h"

namespace dsinfer {

AddedTokenSplitter::AddedTokenSplitter(const std::vector<AddedToken>* tokens) : tokens_(tokens) {
  for (int i = 0; i < static_cast<int>(tokens->size()); ++i) {
    const std::string& content = (*tokens)[i].content;
    if (!content.empty()) by_first_byte_[static_cast<unsigned char>(content[0])].push_back(i);
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int a, int b) {
      return (*tokens)[a].content.size() > (*tokens)[b].content.size();
    });
  }
}

std::vector<Section> AddedTokenSplitter::Split(std::string_view text) const {
  std::vector<Section> sections;
  size_t start = 0, i = 0;
  while (i < text.size()) {
    const AddedToken* match = nullptr;
    if (tokens_ != nullptr) {
      for (int index : by_first_byte_[static_cast<unsigned char>(text[i])]) {
        const std::string& content = (*tokens_)[index].content;
        if (text.compare(i, content.size(), content) == 0) {
          match = &(*tokens_)[index];
          break;
        }
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    if (i > start) sections.push_back(Section{text.substr(start, i - start), nullptr});
    sections.push_back(Section{text.substr(i, match->content.size()), match});
    i += match->content.size();
    start = i;
  }
  if (start < text.size()) sections.push_back(Section{text.substr(start), nullptr});

  for (size_t s = 0; s < sections.size(); ++s) {
    const AddedToken* token = sections[s].token;
    if (token == nullptr) continue;
    if (token->lstrip && s > 0 && sections[s - 1].token == nullptr) {
      sections[s - 1].text = TrimJsEnd(sections[s - 1].text);
    }
    if (token->rstrip && s + 1 < sections.size() && sections[s + 1].token == nullptr) {
      sections[s + 1].text = TrimJsStart(sections[s + 1].text);
    }
  }
  return sections;
}

}  // namespace dsinfer

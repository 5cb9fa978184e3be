// Loading resolves every merge to (left id, right id) -> (rank, merged id) once, so encoding
// never touches strings after the initial symbol lookup. The symbol list and the heap live in
// thread-local scratch buffers that keep their capacity between pieces: most pieces are short
// words and would otherwise spend more time in malloc than in merging.
#include "engine/tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

struct Symbol {
  int32_t id;      // -1: not in the vocabulary (never merges)
  int32_t prev;    // index of the previous live symbol, -1 at the start
  int32_t next;    // index of the next live symbol, -1 at the end
  uint32_t begin;  // byte range in the piece
  uint32_t end;
};

struct Candidate {
  int32_t rank;
  int32_t left;  // symbol index (= position order)
  int32_t left_id;
  int32_t right_id;
  int32_t merged_id;
  bool operator>(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};

// A min-heap over a reusable vector (std::priority_queue cannot clear and keep capacity).
struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

absl::StatusOr<bool> OptionalBool(const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat("model.", key, " must be a boolean"));
  }
  return it->get<bool>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& model,
                                                             bool byte_level) {
  if (!model.is_object())
    return absl::InvalidArgumentError("tokenizer.json has no \"model\" object");
  auto type = model.find("type");
  // Old files omit the type; a vocab plus merges is then BPE.
  if (type != model.end() && !(type->is_string() && type->get<std::string>() == "BPE")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported model type ", type->dump(), " (only \"BPE\" is implemented)"));
  }
  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) {
    return absl::InvalidArgumentError("model.vocab is missing or not an object");
  }
  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) {
    return absl::InvalidArgumentError("model.merges is missing or not an array");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return absl::InvalidArgumentError(absl::StrCat("model.", key, " is not supported"));
    }
  }
  if (auto it = model.find("dropout");
      it != model.end() && !it->is_null() && !(it->is_number() && it->get<double>() == 0.0)) {
    return absl::InvalidArgumentError("model.dropout is not supported at inference");
  }

  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  m->byte_level_ = byte_level;
  ASSIGN_OR_RETURN(m->byte_fallback_, OptionalBool(model, "byte_fallback", false));
  ASSIGN_OR_RETURN(m->fuse_unk_, OptionalBool(model, "fuse_unk", false));
  ASSIGN_OR_RETURN(m->ignore_merges_, OptionalBool(model, "ignore_merges", false));

  // Vocabulary, in the file's spelling first: merges refer to that spelling.
  absl::flat_hash_map<std::string, int32_t> file_ids;
  file_ids.reserve(vocab->size());
  int64_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.vocab[", nlohmann::json(it.key()).dump(), "] is not a non-negative integer id"));
    }
    file_ids.emplace(it.key(), static_cast<int32_t>(it.value().get<int64_t>()));
    max_id = std::max(max_id, it.value().get<int64_t>());
  }
  m->id_to_token_.resize(max_id + 1);
  m->id_present_.assign(max_id + 1, false);
  m->token_to_id_.reserve(file_ids.size());
  for (const auto& [token, id] : file_ids) {
    std::string spelling = token;
    if (byte_level) {
      // Tokens outside the byte alphabet (none in real byte-level files) keep their text.
      if (std::optional<std::string> bytes = ByteLevelToBytes(token)) spelling = *std::move(bytes);
    }
    if (m->id_present_[id]) {
      return absl::InvalidArgumentError(absl::StrCat("model.vocab: id ", id, " is used twice"));
    }
    m->id_present_[id] = true;
    m->id_to_token_[id] = spelling;
    m->token_to_id_.emplace(std::move(spelling), id);
  }

  // Merges: "left right" strings (tokenizers < 0.20) or [left, right] pairs.
  m->merges_.reserve(merges->size());
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const nlohmann::json& entry = (*merges)[rank];
    std::string left, right;
    if (entry.is_string()) {
      const std::string& s = entry.get_ref<const std::string&>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("model.merges[", rank, "] = ", entry.dump(),
                         " is not two tokens separated by one space"));
      }
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", rank, "] = ", entry.dump(),
                                                     " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    auto l = file_ids.find(left), r = file_ids.find(right), merged = file_ids.find(left + right);
    if (l == file_ids.end() || r == file_ids.end() || merged == file_ids.end()) {
      const std::string& missing = l == file_ids.end()   ? left
                                   : r == file_ids.end() ? right
                                                         : left + right;
      return absl::InvalidArgumentError(absl::StrCat("model.merges[", rank, "] = ", entry.dump(),
                                                     ": token ", nlohmann::json(missing).dump(),
                                                     " is not in model.vocab"));
    }
    // A repeated pair keeps its first (best) rank, as in Hugging Face tokenizers' map build.
    m->merges_.try_emplace(PairKey(l->second, r->second),
                           Merge{static_cast<int32_t>(rank), merged->second});
  }

  // See split_at_metaspace_ in the header.
  if (!byte_level) {
    const std::string meta = "\xE2\x96\x81";
    bool safe = true;
    for (const auto& [key, merge] : m->merges_) {
      const std::string& left = m->id_to_token_[static_cast<int32_t>(key >> 32)];
      const std::string& right = m->id_to_token_[static_cast<int32_t>(key & 0xFFFFFFFFu)];
      const bool left_ends_meta = left.size() >= meta.size() &&
                                  left.compare(left.size() - meta.size(), meta.size(), meta) == 0;
      if (right.compare(0, meta.size(), meta) == 0 && !left_ends_meta) {
        safe = false;
        break;
      }
    }
    m->split_at_metaspace_ = safe;
  }

  m->byte_ids_.fill(-1);
  m->byte_fallback_ids_.fill(-1);
  for (const auto& [token, id] : m->token_to_id_) {
    size_t pos = 0;
    if (!byte_level && !token.empty() && static_cast<unsigned char>(token[0]) >= 0x80 &&
        ValidateUtf8(token).ok()) {
      const uint32_t cp = DecodeUtf8(token, &pos);
      if (pos == token.size()) m->char_ids_.emplace(cp, id);
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (auto id = m->TokenToId(std::string(1, static_cast<char>(b)))) m->byte_ids_[b] = *id;
    if (auto id = m->TokenToId(absl::StrFormat("<0x%02X>", b))) m->byte_fallback_ids_[b] = *id;
  }
  if (auto unk = model.find("unk_token"); unk != model.end() && !unk->is_null()) {
    if (!unk->is_string()) return absl::InvalidArgumentError("model.unk_token must be a string");
    m->unk_id_ = m->TokenToId(unk->get<std::string>());
    if (!m->unk_id_) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.unk_token ", unk->dump(), " is not in model.vocab"));
    }
  }
  return m;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int32_t>(id_to_token_.size()) || !id_present_[id]) return nullptr;
  return &id_to_token_[id];
}

absl::Status BpeModel::EmitUnknown(std::string_view symbol, std::vector<int32_t>* ids) const {
  if (byte_fallback_) {
    bool all = true;
    for (char c : symbol) all = all && byte_fallback_ids_[static_cast<unsigned char>(c)] >= 0;
    if (all) {
      for (char c : symbol) ids->push_back(byte_fallback_ids_[static_cast<unsigned char>(c)]);
      return absl::OkStatus();
    }
  }
  if (!unk_id_) {
    return absl::InvalidArgumentError(
        absl::StrCat("text contains ", nlohmann::json(std::string(symbol)).dump(),
                     " which is not in the vocabulary, and the model has no unk_token"));
  }
  ids->push_back(*unk_id_);
  return absl::OkStatus();
}

absl::Status BpeModel::Encode(std::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return absl::OkStatus();
  if (ignore_merges_) {
    if (auto it = token_to_id_.find(absl::string_view(piece.data(), piece.size()));
        it != token_to_id_.end()) {
      ids->push_back(it->second);
      return absl::OkStatus();
    }
  }
  if (!split_at_metaspace_) return EncodeWord(piece, ids);
  constexpr std::string_view kMeta = "\xE2\x96\x81";
  size_t start = 0;
  size_t pos = piece.find(kMeta, 1);
  while (pos != std::string_view::npos) {
    const bool after_meta =
        pos >= kMeta.size() && piece.substr(pos - kMeta.size(), kMeta.size()) == kMeta;
    if (!after_meta) {  // a word boundary: a non-"▁" character followed by "▁"

      RETURN_IF_ERROR(EncodeWord(piece.substr(start, pos - start), ids));
      start = pos;
    }
    pos = piece.find(kMeta, pos + kMeta.size());
  }
  return EncodeWord(piece.substr(start), ids);
}

absl::Status BpeModel::EncodeWord(std::string_view piece, std::vector<int32_t>* ids) const {
  if (piece.empty()) return absl::OkStatus();
  thread_local Scratch scratch;
  std::vector<Symbol>& symbols = scratch.symbols;
  symbols.clear();
  if (byte_level_) {
    for (size_t i = 0; i < piece.size(); ++i) {
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back(Symbol{byte_ids_[static_cast<unsigned char>(piece[i])], n - 1, n + 1,
                               static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1)});
    }
  } else {
    size_t pos = 0;
    while (pos < piece.size()) {
      const unsigned char lead = static_cast<unsigned char>(piece[pos]);
      const size_t begin = pos;
      int32_t id;
      if (lead < 0x80) {
        id = byte_ids_[lead];
        ++pos;
      } else {
        auto it = char_ids_.find(DecodeUtf8(piece, &pos));
        id = it == char_ids_.end() ? -1 : it->second;
      }
      const int32_t n = static_cast<int32_t>(symbols.size());
      symbols.push_back(
          Symbol{id, n - 1, n + 1, static_cast<uint32_t>(begin), static_cast<uint32_t>(pos)});
    }
  }
  symbols.back().next = -1;

  std::vector<Candidate>& heap = scratch.heap;
  heap.clear();
  const auto greater = std::greater<Candidate>();
  const auto push = [&](int32_t left) {
    const int32_t right = symbols[left].next;
    if (right < 0 || symbols[left].id < 0 || symbols[right].id < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    heap.push_back(
        Candidate{it->second.rank, left, symbols[left].id, symbols[right].id, it->second.id});
    std::push_heap(heap.begin(), heap.end(), greater);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), greater);
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = symbols[c.left];
    // Stale: the left symbol was absorbed (id -2) or grew, or its right neighbour changed.
    if (left.id != c.left_id || left.next < 0 || symbols[left.next].id != c.right_id) continue;
    Symbol& right = symbols[left.next];
    left.id = c.merged_id;
    left.end = right.end;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -2;
    if (left.prev >= 0) push(left.prev);
    push(c.left);
  }

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      ids->push_back(s.id);
    } else {
      RETURN_IF_ERROR(EmitUnknown(piece.substr(s.begin, s.end - s.begin), ids));
    }
  }
  return absl::OkStatus();
}

}  // namespace dsinfer

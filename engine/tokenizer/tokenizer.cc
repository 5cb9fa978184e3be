// Loading parses both JSON files with exceptions disabled (a parse failure is a discarded
// value, reported as INVALID_ARGUMENT) and builds each pipeline stage through its factory,
// which owns the knowledge of its JSON spelling. Encoding allocates only per call (no shared
// mutable state besides the BPE model's thread-local scratch buffers).
#include "engine/tokenizer/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model_config.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/utf8.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

absl::StatusOr<nlohmann::json> ParseJson(const std::string& text, const char* what) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON"));
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a JSON object"));
  return j;
}

// tokenizer_config.json spells a token as a string or as {"content": ..., "__type": ...}.
std::optional<std::string> ConfigTokenContent(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return std::nullopt;
}

bool JsonBool(const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromDir(const std::string& dir) {
  const std::filesystem::path root(dir);
  std::error_code ec;
  if (!std::filesystem::exists(root / "tokenizer.json", ec)) {
    return absl::NotFoundError(absl::StrCat("no tokenizer.json in ", dir));
  }
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile((root / "tokenizer.json").string()));
  std::string config_json;
  if (std::filesystem::exists(root / "tokenizer_config.json", ec)) {
    ASSIGN_OR_RETURN(config_json, ReadFile((root / "tokenizer_config.json").string()));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadFromJson(tokenizer_json, config_json);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(dir, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::LoadFromJson(
    const std::string& tokenizer_json, const std::string& config_json) {
  ASSIGN_OR_RETURN(nlohmann::json tj, ParseJson(tokenizer_json, "tokenizer.json"));
  nlohmann::json config = nlohmann::json::object();
  if (!config_json.empty()) {
    ASSIGN_OR_RETURN(config, ParseJson(config_json, "tokenizer_config.json"));
  }
  auto t = std::unique_ptr<Tokenizer>(new Tokenizer());
  const nlohmann::json null_json;
  const auto field = [&](const char* key) -> const nlohmann::json& {
    auto it = tj.find(key);
    return it == tj.end() ? null_json : *it;
  };

  ASSIGN_OR_RETURN(t->normalizer_, NormalizerFromJson(field("normalizer")));
  ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizerFromJson(field("pre_tokenizer")));
  ASSIGN_OR_RETURN(t->decoder_, DecoderFromJson(field("decoder")));
  if (field("model").is_null()) {
    return absl::InvalidArgumentError("tokenizer.json has no \"model\"");
  }
  const bool byte_level = t->pre_tokenizer_ != nullptr && t->pre_tokenizer_->byte_level();
  ASSIGN_OR_RETURN(t->model_, BpeModel::FromJson(field("model"), byte_level));
  t->vocab_size_ = t->model_->size();

  // Added tokens.
  const nlohmann::json& added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) {
    return absl::InvalidArgumentError("tokenizer.json \"added_tokens\" is not an array");
  }
  if (added.is_array()) {
    for (size_t i = 0; i < added.size(); ++i) {
      const nlohmann::json& a = added[i];
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() > INT32_MAX ||
          !a.contains("content") || !a["content"].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "added_tokens[", i, "] needs an integer \"id\" and a string \"content\": ", a.dump()));
      }
      AddedToken token;
      token.content = a["content"].get<std::string>();
      RETURN_IF_ERROR(ValidateUtf8(token.content));
      token.id = static_cast<int32_t>(a["id"].get<int64_t>());
      token.special = JsonBool(a, "special", false);
      token.lstrip = JsonBool(a, "lstrip", false);
      token.rstrip = JsonBool(a, "rstrip", false);
      t->vocab_size_ = std::max<int64_t>(t->vocab_size_, int64_t{token.id} + 1);
      t->added_tokens_.push_back(std::move(token));
    }
  }
  t->splitter_ = AddedTokenSplitter(&t->added_tokens_);
  t->special_.assign(t->vocab_size_, false);
  for (const AddedToken& token : t->added_tokens_) {
    t->added_by_id_[token.id] = &token;
    if (token.special) t->special_[token.id] = true;
  }
  if (auto it = config.find("additional_special_tokens"); it != config.end() && it->is_array()) {
    for (const auto& entry : *it) {
      std::optional<std::string> content;
      if (entry.is_string()) content = entry.get<std::string>();
      if (entry.is_object() && entry.contains("content") && entry["content"].is_string()) {
        content = entry["content"].get<std::string>();
      }
      if (!content) continue;
      if (auto id = t->TokenToId(*content)) t->special_[*id] = true;
    }
  }

  // BOS / EOS.
  for (auto [key, out] :
       {std::pair{"bos_token", &t->bos_id_}, std::pair{"eos_token", &t->eos_id_}}) {
    if (std::optional<std::string> content = ConfigTokenContent(config, key)) {
      *out = t->TokenToId(*content);
      if (!*out) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer_config.json ", key, " ",
                                                       nlohmann::json(*content).dump(),
                                                       " is not in the vocabulary"));
      }
    }
  }
  const bool has_add_bos = config.contains("add_bos_token") && config["add_bos_token"].is_boolean();
  const bool has_add_eos = config.contains("add_eos_token") && config["add_eos_token"].is_boolean();
  if (has_add_bos || has_add_eos) {
    if (JsonBool(config, "add_bos_token", false)) {
      if (!t->bos_id_)
        return absl::InvalidArgumentError("add_bos_token is set but bos_token is not");
      t->prefix_ids_.push_back(*t->bos_id_);
    }
    if (JsonBool(config, "add_eos_token", false)) {
      if (!t->eos_id_)
        return absl::InvalidArgumentError("add_eos_token is set but eos_token is not");
      t->suffix_ids_.push_back(*t->eos_id_);
    }
  } else {
    // Post-processor: TemplateProcessing's single template, or nothing.
    std::vector<const nlohmann::json*> processors;
    const nlohmann::json& pp = field("post_processor");
    if (pp.is_object() && pp.contains("type") && pp["type"] == "Sequence" &&
        pp.contains("processors") && pp["processors"].is_array()) {
      for (const auto& p : pp["processors"]) processors.push_back(&p);
    } else if (!pp.is_null()) {
      processors.push_back(&pp);
    }
    for (const nlohmann::json* p : processors) {
      const std::string type = p->is_object() && p->contains("type") && (*p)["type"].is_string()
                                   ? (*p)["type"].get<std::string>()
                                   : "";
      if (type == "ByteLevel") continue;
      if (type != "TemplateProcessing") {
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported post_processor type \"", type,
                         "\" (implemented: TemplateProcessing, ByteLevel, Sequence)"));
      }
      auto single = p->find("single");
      if (single == p->end() || !single->is_array()) {
        return absl::InvalidArgumentError(
            "post_processor TemplateProcessing has no \"single\" array");
      }
      bool seen_sequence = false;
      for (const auto& item : *single) {
        if (item.is_object() && item.contains("Sequence")) {
          seen_sequence = true;
          continue;
        }
        if (!(item.is_object() && item.contains("SpecialToken") &&
              item["SpecialToken"].is_object() && item["SpecialToken"].contains("id") &&
              item["SpecialToken"]["id"].is_string())) {
          return absl::InvalidArgumentError(
              absl::StrCat("post_processor TemplateProcessing: bad item ", item.dump()));
        }
        const std::string content = item["SpecialToken"]["id"].get<std::string>();
        std::optional<int32_t> id = t->TokenToId(content);
        if (!id) {
          return absl::InvalidArgumentError(
              absl::StrCat("post_processor TemplateProcessing: special token ",
                           nlohmann::json(content).dump(), " is not in the vocabulary"));
        }
        (seen_sequence ? t->suffix_ids_ : t->prefix_ids_).push_back(*id);
      }
    }
  }
  return t;
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  for (const AddedToken& a : added_tokens_) {
    if (a.content == token) return a.id;
  }
  if (model_->byte_level()) {
    if (std::optional<std::string> bytes = ByteLevelToBytes(token)) {
      return model_->TokenToId(*bytes);
    }
  }
  return model_->TokenToId(token);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < static_cast<int32_t>(special_.size()) && special_[id];
}

absl::Status Tokenizer::EncodeSection(std::string_view text, int section_index,
                                      std::vector<int32_t>* ids) const {
  std::string normalized(text);
  if (normalizer_ != nullptr) {
    ASSIGN_OR_RETURN(normalized, normalizer_->Normalize(std::move(normalized)));
  }
  if (normalized.empty()) return absl::OkStatus();
  const size_t first = ids->size();
  if (pre_tokenizer_ == nullptr) {
    RETURN_IF_ERROR(model_->Encode(normalized, ids));
  } else {
    std::vector<std::string> pieces;
    pieces.push_back(std::move(normalized));
    RETURN_IF_ERROR(pre_tokenizer_->Split(&pieces, section_index));
    for (const std::string& piece : pieces) RETURN_IF_ERROR(model_->Encode(piece, ids));
  }
  if (model_->fuse_unk() && model_->unk_id()) {
    const int32_t unk = *model_->unk_id();
    auto end = std::unique(ids->begin() + first, ids->end(),
                           [unk](int32_t a, int32_t b) { return a == unk && b == unk; });
    ids->erase(end, ids->end());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       bool add_special_tokens) const {
  RETURN_IF_ERROR(ValidateUtf8(text));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special_tokens) ids.insert(ids.end(), prefix_ids_.begin(), prefix_ids_.end());
  const std::vector<Section> sections = splitter_.Split(text);
  for (size_t i = 0; i < sections.size(); ++i) {
    if (sections[i].token != nullptr) {
      ids.push_back(sections[i].token->id);
    } else if (!sections[i].text.empty()) {
      RETURN_IF_ERROR(EncodeSection(sections[i].text, static_cast<int>(i), &ids));
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size_, ")"));
    }
    if (skip_special_tokens && special_[id]) continue;
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      tokens.push_back(it->second->content);
    } else if (const std::string* token = model_->IdToToken(id)) {
      tokens.push_back(*token);
    } else {
      tokens.emplace_back();  // a hole in the id space decodes to nothing
    }
  }
  if (decoder_ == nullptr) return LossyUtf8(absl::StrJoin(tokens, " "));
  RETURN_IF_ERROR(decoder_->DecodeChain(&tokens));
  return LossyUtf8(absl::StrJoin(tokens, ""));
}

}  // namespace dsinfer

// One small class per decoder type; the factory is the only place that knows the JSON names.
#include "engine/tokenizer/decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/pattern.h"
#include "engine/tokenizer/utf8.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& step : steps_) RETURN_IF_ERROR(step->DecodeChain(tokens));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      ASSIGN_OR_RETURN(token, pattern_.ReplaceAll(token, content_));
    }
    return absl::OkStatus();
  }

 private:
  Pattern pattern_;
  std::string content_;
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

class ByteFallbackDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string bytes;
    for (std::string& token : *tokens) {
      if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token[5] == '>' &&
          HexValue(token[3]) >= 0 && HexValue(token[4]) >= 0) {
        bytes.push_back(static_cast<char>(HexValue(token[3]) * 16 + HexValue(token[4])));
        continue;
      }
      if (!bytes.empty()) {
        out.push_back(LossyUtf8(bytes));
        bytes.clear();
      }
      out.push_back(std::move(token));
    }
    if (!bytes.empty()) out.push_back(LossyUtf8(bytes));
    *tokens = std::move(out);
    return absl::OkStatus();
  }
};

class FuseDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string joined = absl::StrJoin(*tokens, "");
    tokens->assign(1, std::move(joined));
    return absl::OkStatus();
  }
};

// Strips up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    if (content_.empty()) return absl::OkStatus();
    const size_t n = content_.size();
    for (std::string& token : *tokens) {
      size_t begin = 0, end = token.size();
      for (int i = 0; i < start_ && end - begin >= n && token.compare(begin, n, content_) == 0;
           ++i) {
        begin += n;
      }
      for (int i = 0; i < stop_ && end - begin >= n && token.compare(end - n, n, content_) == 0;
           ++i) {
        end -= n;
      }
      token = token.substr(begin, end - begin);
    }
    return absl::OkStatus();
  }

 private:
  std::string content_;
  int start_;
  int stop_;
};

class ByteLevelDecoder : public Decoder {
 public:
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    std::string text = LossyUtf8(absl::StrJoin(*tokens, ""));
    tokens->assign(1, std::move(text));
    return absl::OkStatus();
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  absl::Status DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      token = absl::StrReplaceAll(token, {{replacement_, " "}});
      if (strip_first_ && i == 0 && !token.empty() && token[0] == ' ') token.erase(0, 1);
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> DecoderFromJson(const nlohmann::json& config) {
  if (config.is_null()) return nullptr;
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("decoder must be an object with a string \"type\", got ", config.dump()));
  }
  const std::string type = config["type"].get<std::string>();
  if (type == "Sequence") {
    auto it = config.find("decoders");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError("decoder Sequence: \"decoders\" must be an array");
    }
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const auto& child : *it) {
      ASSIGN_OR_RETURN(auto step, DecoderFromJson(child));
      if (step != nullptr) steps.push_back(std::move(step));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "Replace") {
    auto content = config.find("content");
    if (content == config.end() || !content->is_string()) {
      return absl::InvalidArgumentError("decoder Replace: \"content\" must be a string");
    }
    ASSIGN_OR_RETURN(Pattern pattern, Pattern::FromJson(config.value("pattern", nlohmann::json()),
                                                        "decoder Replace"));
    return std::make_unique<ReplaceDecoder>(std::move(pattern), content->get<std::string>());
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Strip") {
    auto content = config.find("content");
    auto start = config.find("start");
    auto stop = config.find("stop");
    if (content == config.end() || !content->is_string() || start == config.end() ||
        !start->is_number_integer() || stop == config.end() || !stop->is_number_integer()) {
      return absl::InvalidArgumentError(
          "decoder Strip: needs a string \"content\" and integer \"start\" and \"stop\"");
    }
    return std::make_unique<StripDecoder>(content->get<std::string>(), start->get<int>(),
                                          stop->get<int>());
  }
  if (type == "Metaspace") {
    std::string replacement = "\xE2\x96\x81";
    if (auto it = config.find("replacement"); it != config.end() && it->is_string()) {
      replacement = it->get<std::string>();
    }
    bool strip_first = true;
    if (auto it = config.find("prepend_scheme"); it != config.end() && it->is_string()) {
      strip_first = it->get<std::string>() != "never";
    } else if (auto it2 = config.find("add_prefix_space");
               it2 != config.end() && it2->is_boolean()) {
      strip_first = it2->get<bool>();
    }
    return std::make_unique<MetaspaceDecoder>(std::move(replacement), strip_first);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported decoder type \"", type,
      "\" (implemented: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace)"));
}

}  // namespace dsinfer

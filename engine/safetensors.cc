// Format: 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// Offsets are relative to the start of the data section.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "engine/model_config.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot stat ", path));
    }
    auto file = std::unique_ptr<MappedFile>(new MappedFile());
    file->size_ = static_cast<size_t>(st.st_size);
    if (file->size_ > 0) {
      void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(errno)));
      }
      file->data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
    return file;
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace {

using Json = nlohmann::json;
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

absl::Status FileError(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

}  // namespace

int64_t TensorRef::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsCheckpoint::~SafetensorsCheckpoint() = default;

absl::Status SafetensorsCheckpoint::AddFile(const std::string& path,
                                            const std::vector<std::string>* expected_names) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  if (file->size() < 8) return FileError(path, "truncated: shorter than the 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file->data(), 8);
  if (header_len > kMaxHeaderBytes || header_len > file->size() - 8) {
    return FileError(path, absl::StrCat("truncated or corrupt: header length ", header_len,
                                        " exceeds the file size ", file->size()));
  }
  const char* header_begin = reinterpret_cast<const char*>(file->data() + 8);
  Json header = Json::parse(header_begin, header_begin + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object()) return FileError(path, "header is not a JSON object");
  const uint64_t data_begin = 8 + header_len;
  const uint64_t data_size = file->size() - data_begin;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> range_names;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const Json& e = it.value();
    auto where = [&](const std::string& what) {
      return FileError(path, absl::StrCat("tensor '", name, "': ", what));
    };
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets")) {
      return where("entry needs dtype, shape and data_offsets");
    }
    if (!e["dtype"].is_string()) return where("dtype is not a string");
    absl::StatusOr<DType> dtype = ParseSafetensorsDType(e["dtype"].get<std::string>());
    if (!dtype.ok()) return where(std::string(dtype.status().message()));
    TensorRef t;
    t.name = name;
    t.file = path;
    t.dtype = *dtype;
    if (!e["shape"].is_array()) return where("shape is not a list");
    uint64_t elements = 1;
    for (const Json& d : e["shape"]) {
      if (!d.is_number_unsigned()) return where(absl::StrCat("bad dimension ", d.dump()));
      const uint64_t dim = d.get<uint64_t>();
      if (dim > (1ULL << 40) || (dim != 0 && elements > (1ULL << 50) / dim)) {
        return where("shape too large");
      }
      elements *= dim;
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    const Json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return where("data_offsets must be two non-negative integers");
    }
    const uint64_t begin = off[0].get<uint64_t>();
    const uint64_t end = off[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return where(absl::StrCat("data_offsets [", begin, ", ", end,
                                ") lie outside the data section of ", data_size,
                                " bytes (truncated file?)"));
    }
    if (end - begin != elements * DTypeSize(t.dtype)) {
      return where(absl::StrCat("shape holds ", elements * DTypeSize(t.dtype), " bytes but data_offsets span ",
                                end - begin));
    }
    if (expected_names != nullptr &&
        std::find(expected_names->begin(), expected_names->end(), name) == expected_names->end()) {
      return where("is not listed for this file in model.safetensors.index.json");
    }
    if (tensors_.count(name)) return where("appears in more than one file");
    t.data = file->data() + data_begin + begin;
    t.bytes = static_cast<int64_t>(end - begin);
    ranges.emplace_back(begin, end);
    range_names.push_back(name);
    tensors_.emplace(name, std::move(t));
  }
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  // Compare each non-empty range with the furthest-reaching non-empty one before it (not just
  // its sorted neighbour, which may be an empty tensor lying inside a larger one).
  size_t reach = order.size();  // index into `order` of that range; none yet
  for (size_t i = 0; i < order.size(); ++i) {
    const auto& cur = ranges[order[i]];
    if (cur.first == cur.second) continue;
    if (reach != order.size()) {
      const auto& prev = ranges[order[reach]];
      if (cur.first < prev.second) {
        return FileError(path, absl::StrCat("tensors '", range_names[order[reach]], "' and '",
                                            range_names[order[i]], "' overlap"));
      }
    }
    if (reach == order.size() || cur.second > ranges[order[reach]].second) reach = i;
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenFile(
    const std::string& path) {
  auto ckpt = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  RETURN_IF_ERROR(ckpt->AddFile(path, nullptr));
  return ckpt;
}

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::OpenDir(
    const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  absl::StatusOr<std::string> index_text = ReadFile(index_path);
  if (!index_text.ok()) {
    if (access((dir + "/model.safetensors").c_str(), F_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(
          dir, ": no model.safetensors or model.safetensors.index.json found"));
    }
    return OpenFile(dir + "/model.safetensors");
  }
  Json index = Json::parse(*index_text, nullptr, false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") ||
      !index["weight_map"].is_object()) {
    return FileError(index_path, "needs an object 'weight_map' of tensor name -> shard file");
  }
  std::map<std::string, std::vector<std::string>> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it.value().is_string()) return FileError(index_path, absl::StrCat("weight_map['", it.key(), "'] is not a file name"));
    const std::string shard = it.value().get<std::string>();
    if (shard.find('/') != std::string::npos || shard.empty() || shard[0] == '.') {
      return FileError(index_path, absl::StrCat("shard name '", shard, "' is not a plain file name"));
    }
    shards[shard].push_back(it.key());
  }
  auto ckpt = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  for (const auto& [shard, names] : shards) {
    RETURN_IF_ERROR(ckpt->AddFile(dir + "/" + shard, &names));
    for (const std::string& n : names) {
      if (!ckpt->tensors_.count(n)) {
        return FileError(dir + "/" + shard, absl::StrCat("tensor '", n, "' listed in the index is missing"));
      }
    }
  }
  return ckpt;
}

absl::StatusOr<const TensorRef*> SafetensorsCheckpoint::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in checkpoint"));
  return &it->second;
}

}  // namespace dsinfer

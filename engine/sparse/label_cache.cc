// Bytes are accounted as the GPU layout would hold them (RowBytes × capacity), which is
// what the vectors hold too: uint16 values, packed nibbles, fp16 scale/minimum. In
// kAccountingOnly the same bytes are counted but the vectors are never sized: the only host
// label memory reserved anywhere in the engine is the resize below.
#include "engine/sparse/label_cache.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/label_reference.h"

namespace dsinfer {

int64_t LabelFormat::RowBytes() const {
  return bits == 4 ? Label4BitRowBytes(r) + 4 : 2 * static_cast<int64_t>(r);
}

absl::Status LabelCache::Reserve(KvBlockPool::SequenceId seq, const LabelFormat& format,
                                 int64_t tokens) {
  auto it = sequences_.find(seq);
  if (it != sequences_.end() && !(it->second.format == format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the label format of a sequence cannot change: it has r=", it->second.format.r, " at ",
        it->second.format.bits, " bits, the request asks r=", format.r, " at ", format.bits,
        " bits"));
  }
  if (it == sequences_.end()) {
    it = sequences_.emplace(seq, Sequence{format, 0, std::vector<Layer>(layers_)}).first;
  }
  Sequence& s = it->second;
  if (tokens <= s.capacity) return absl::OkStatus();
  const int64_t capacity = std::max(tokens, 2 * s.capacity);
  const int64_t slots = capacity * kv_heads_;
  if (host_storage()) {
    for (Layer& l : s.layers) {
      if (format.bits == 4) {
        l.codes.resize(slots * Label4BitRowBytes(format.r));
        l.scales.resize(slots);
        l.minimums.resize(slots);
      } else {
        l.f16.resize(slots * format.r);
      }
    }
  }
  bytes_ -= BytesOf(s);
  s.capacity = capacity;
  bytes_ += BytesOf(s);
  return absl::OkStatus();
}

const LabelFormat& LabelCache::format(KvBlockPool::SequenceId seq) const {
  return sequences_.at(seq).format;
}

LabelCache::Layer& LabelCache::layer(KvBlockPool::SequenceId seq, int layer) {
  return sequences_.at(seq).layers[layer];
}

const LabelCache::Layer& LabelCache::layer(KvBlockPool::SequenceId seq, int layer) const {
  return sequences_.at(seq).layers[layer];
}

int64_t LabelCache::capacity(KvBlockPool::SequenceId seq) const {
  return sequences_.at(seq).capacity;
}

void LabelCache::Release(KvBlockPool::SequenceId seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  bytes_ -= BytesOf(it->second);
  sequences_.erase(it);
}

void LabelCache::ReleaseMissing(const KvBlockPool& pool) {
  std::vector<KvBlockPool::SequenceId> gone;
  for (const auto& [id, s] : sequences_) {
    if (!pool.Contains(id)) gone.push_back(id);
  }
  for (KvBlockPool::SequenceId id : gone) Release(id);
}

int64_t LabelCache::SequenceBytes(KvBlockPool::SequenceId seq) const {
  auto it = sequences_.find(seq);
  return it == sequences_.end() ? 0 : BytesOf(it->second);
}

}  // namespace dsinfer

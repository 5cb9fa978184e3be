// Signatures of the operations of a CUDA-graph decode step (CudaBackend::GraphOp): a hash of
// op code, pointers and shapes, recorded when a step is captured and checked when it replays.
#ifndef DSINFER_ENGINE_CUDA_GRAPH_SIGNATURE_H_
#define DSINFER_ENGINE_CUDA_GRAPH_SIGNATURE_H_

#include <cstdint>
#include <initializer_list>

#include "engine/backend.h"

namespace dsinfer {

inline uint64_t SignatureMix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdull;
}
inline uint64_t Sig(std::initializer_list<uint64_t> values) {
  uint64_t h = 0;
  for (uint64_t v : values) h = SignatureMix(h, v);
  return h;
}
inline uint64_t SigPtr(const void* p) { return reinterpret_cast<uintptr_t>(p); }
inline uint64_t SigTensor(const DeviceTensor& t) {
  return Sig({SigPtr(t.data), static_cast<uint64_t>(t.rows), static_cast<uint64_t>(t.cols),
              static_cast<uint64_t>(t.dtype)});
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_GRAPH_SIGNATURE_H_

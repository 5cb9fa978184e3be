// Memory-mapped safetensors checkpoints, single-file or sharded
// (model.safetensors.index.json). Every header entry is checked before any tensor is used:
// dtype known, offsets inside the data section, byte size = product(shape) × dtype size,
// no two tensors overlapping. Errors name the file and the tensor.
#ifndef DSINFER_ENGINE_SAFETENSORS_H_
#define DSINFER_ENGINE_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace dsinfer {

// A tensor inside a mapped file: valid while the owning SafetensorsCheckpoint lives.
struct TensorRef {
  std::string name;
  std::string file;  // path of the file that holds it, for error messages
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  int64_t bytes = 0;

  int64_t NumElements() const;
};

class MappedFile;

class SafetensorsCheckpoint {
 public:
  // Opens DIR/model.safetensors.index.json if it exists, else DIR/model.safetensors.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenDir(const std::string& dir);
  // Opens one .safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> OpenFile(const std::string& path);
  ~SafetensorsCheckpoint();

  const std::map<std::string, TensorRef>& tensors() const { return tensors_; }
  // NOT_FOUND naming the tensor when absent.
  absl::StatusOr<const TensorRef*> Find(const std::string& name) const;

 private:
  SafetensorsCheckpoint() = default;
  absl::Status AddFile(const std::string& path, const std::vector<std::string>* expected_names);

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorRef> tensors_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SAFETENSORS_H_

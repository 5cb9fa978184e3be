// CreateBackend in a CUDA build: device names are parsed strictly, "cpu" always works, and
// "cuda" gives the CUDA backend on a GPU host or a clear UNAVAILABLE elsewhere — the message a
// user of `--device cuda` sees on a machine without a GPU. Runs everywhere (label unit).
#include "engine/backend_factory.h"

#include <string>

#include "engine/cuda/cuda_backend.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

TEST(BackendFactory, CpuAlwaysWorks) {
  auto backend = CreateBackend("cpu");
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
  auto t = (*backend)->Allocate(3, 5);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->rows, 3);
  (*backend)->Free(*t);
}

TEST(BackendFactory, RejectsUnknownDevices) {
  for (const char* name : {"", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cuda0", "cpu:0"}) {
    auto backend = CreateBackend(name);
    ASSERT_FALSE(backend.ok()) << name;
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(std::string(backend.status().message()).find("unknown device"), std::string::npos);
  }
}

TEST(BackendFactory, CudaBackendOrAClearError) {
  EXPECT_TRUE(CudaBackendBuilt());
  BackendFactoryOptions options;
  options.cuda_dtype = DType::kF16;
  auto backend = CreateBackend("cuda", options);
  if (!CudaDeviceAvailable()) {
    ASSERT_FALSE(backend.ok());
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(std::string(backend.status().message()).find("no CUDA GPU"), std::string::npos)
        << backend.status();
    return;
  }
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cuda");
  EXPECT_EQ((*backend)->kv_dtype(), DType::kF16);
  auto residual = (*backend)->AllocateF32(2, 8);
  ASSERT_TRUE(residual.ok()) << residual.status();
  EXPECT_EQ(residual->dtype, DType::kF32);
  (*backend)->Free(*residual);
  EXPECT_FALSE(CreateBackend("cuda:4096").ok());  // no such GPU
}

}  // namespace
}  // namespace dsinfer

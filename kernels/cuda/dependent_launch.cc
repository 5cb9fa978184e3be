#include "kernels/cuda/dependent_launch.h"

#include <atomic>

namespace dsinfer {
namespace cuda {
namespace {

std::atomic<bool>& Switch() {
  static std::atomic<bool> on{true};
  return on;
}

std::atomic<bool>& ChainSwitch() {
  static std::atomic<bool> on{true};
  return on;
}

}  // namespace

bool DependentLaunch() { return Switch().load(std::memory_order_relaxed); }
void SetDependentLaunch(bool on) { Switch().store(on, std::memory_order_relaxed); }
bool DependentSparseChain() { return ChainSwitch().load(std::memory_order_relaxed); }
void SetDependentSparseChain(bool on) { ChainSwitch().store(on, std::memory_order_relaxed); }

}  // namespace cuda
}  // namespace dsinfer

// DSINFER_HOST_DEVICE: marks an inline function that both CUDA kernels and host code (their
// reference twins, g++-compiled code) call; empty outside nvcc.
#ifndef DSINFER_KERNELS_HOST_DEVICE_H_
#define DSINFER_KERNELS_HOST_DEVICE_H_

#ifdef __CUDACC__
#define DSINFER_HOST_DEVICE __host__ __device__
#else
#define DSINFER_HOST_DEVICE
#endif

#endif  // DSINFER_KERNELS_HOST_DEVICE_H_

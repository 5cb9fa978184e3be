// The one place an absl::Status becomes a grpc::Status (DESIGN §3.1). absl's canonical codes
// and gRPC's are the same numbers by design, so the mapping is total; it exists as a function
// so that every handler returns errors the same way and the message is never lost.
#ifndef DSINFER_SERVER_GRPC_STATUS_H_
#define DSINFER_SERVER_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace dsinfer {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace dsinfer

#endif  // DSINFER_SERVER_GRPC_STATUS_H_

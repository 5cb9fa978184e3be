// Status plumbing shared by every layer: absl::Status at library boundaries, and the one
// definition of RETURN_IF_ERROR / ASSIGN_OR_RETURN the whole project uses. It lives in the
// lowest layer (kernels/) so that every other layer can include it without reaching up.
#ifndef DSINFER_KERNELS_STATUS_H_
#define DSINFER_KERNELS_STATUS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DSINFER_CONCAT_INNER_(a, b) a##b
#define DSINFER_CONCAT_(a, b) DSINFER_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    ::absl::Status dsinfer_status_ = (expr);                   \
    if (!dsinfer_status_.ok()) return dsinfer_status_;         \
  } while (0)

// `lhs = value of rexpr` (an absl::StatusOr<T>), or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  DSINFER_ASSIGN_OR_RETURN_IMPL_(DSINFER_CONCAT_(dsinfer_statusor_, __LINE__), lhs, rexpr)
#define DSINFER_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                    \
  if (!statusor.ok()) return statusor.status();               \
  lhs = std::move(statusor).value()

#endif  // DSINFER_KERNELS_STATUS_H_

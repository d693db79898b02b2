/*
 * status.cc -- text for the status codes of the C ABI.
 */
#include "../mxops.h"

extern "C" const char* mxops_status_string(int status) {
  switch (status) {
    case MXOPS_OK: return "success";
    case MXOPS_ERR_ARG: return "invalid argument (a size or parameter is out of range)";
    case MXOPS_ERR_WORKSPACE: return "workspace smaller than required";
    case MXOPS_ERR_TOO_LARGE: return "problem exceeds a fixed limit of the kernel";
    default: return status > 0 ? "CUDA error" : "unknown error";
  }
}

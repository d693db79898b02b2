/*
 * init.cc -- the library entry point MXNet calls after loading it.
 */
#include "common.h"

extern "C" int mxops_has_cuda_forward() {
#ifdef MXOPS_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

mxnet::ext::MXReturnValue initialize(int version) {
  // lib_api.h version 11 ships with MXNet 1.9; older 1.x releases lack what this uses.
  if (version >= 10900) return mxnet::ext::MX_SUCCESS;
  MX_ERROR_MSG << "mxops needs MXNet >= 1.9, found version " << version;
  return mxnet::ext::MX_FAIL;
}

// The C interface between the core (framecache._C, built without torch) and
// its optional torch part (framecache._torch_C, compiled against the torch
// installed at build time).
//
// Why two modules: the core must build and import without torch, yet
// TENSOR_MATCH and GLOBAL_STATE are on the hot path and should read a
// tensor's metadata and torch's thread-local state from C++ rather than
// through Python attribute getters. _torch_C exports one `FcTorchApi` table
// in a PyCapsule named FRAMECACHE_TORCH_API_CAPSULE; the core loads it the
// first time a torch guard is built (see torch_access.h) and otherwise reads
// the same facts through Python. Both readers fill the same structs below, so
// the comparison code, and so every guard's result, is shared.
//
// Only plain data and function pointers cross the boundary: the two modules
// are built with different C++ standards (torch's headers need C++20), and no
// C++ exception may cross it (every entry point catches and sets a Python
// error instead). Bump FRAMECACHE_TORCH_API_VERSION on any layout change; the
// core refuses a table of another version and falls back to Python.
//
// Lifetime of what the readers return: pointers are borrowed. Sizes and
// strides point into the tensor's own metadata and stay valid while the
// tensor is alive and no Python code runs (a guard reads and compares them
// without calling out). dtypes are torch's torch.dtype singletons and device
// type names are interned str objects: both live as long as torch, and two
// readers agree on them by identity.
#pragma once

#include <Python.h>

#include <cstdint>

#define FRAMECACHE_TORCH_API_VERSION 2
#define FRAMECACHE_TORCH_API_CAPSULE "framecache._torch_C._api"

namespace framecache::guards {

// What TENSOR_MATCH compares, read from one tensor.
struct FcTensorMeta {
  // The tensor's dispatch key set with the thread's local include set added
  // and exclude set removed (DispatchKeySet::raw_repr()), as torch's own
  // tensor guard computes it: entering inference_mode or enabling autocast
  // changes it.
  uint64_t dispatch_keys;
  PyObject* dtype;        // borrowed torch.dtype
  PyObject* device_type;  // borrowed interned str: "cpu", "cuda", "meta", ...
  int32_t device_index;   // -1 when the device has no index
  int32_t requires_grad;  // 0 or 1
  int64_t ndim;
  const int64_t* sizes;    // borrowed, ndim entries
  const int64_t* strides;  // borrowed, ndim entries
  int64_t storage_offset;
};

// Values of TorchFunctionDisabledState (torch's ATen/PythonTorchFunctionTLS.h).
enum FcTorchFunctionState : int32_t {
  kTorchFunctionEnabled = 0,
  kTorchFunctionSubclassesDisabled = 1,
  kTorchFunctionAllDisabled = 2,
};

// Torch's ambient state that GLOBAL_STATE compares. The mode stacks are read
// entry by entry through FcTorchApi::function_mode_at / dispatch_mode_at.
struct FcGlobalState {
  int32_t grad_enabled;
  int32_t autocast_cpu_enabled;
  int32_t autocast_cuda_enabled;
  int32_t autocast_cache_enabled;
  PyObject* autocast_cpu_dtype;   // borrowed torch.dtype
  PyObject* autocast_cuda_dtype;  // borrowed torch.dtype
  PyObject* default_dtype;        // borrowed torch.dtype
  int32_t deterministic_algorithms;
  int32_t deterministic_warn_only;
  int32_t torch_function_state;  // FcTorchFunctionState
  int64_t function_mode_count;   // length of the torch-function mode stack
  int64_t dispatch_mode_count;   // length of the dispatch mode stack (with infra modes)
};

// What one TENSOR_MATCH expects, as the batched check (FcTorchApi::accept_tensors)
// compares it. Pointers are borrowed from the guard and live as long as it.
struct FcTensorExpect {
  PyTypeObject* type;  // the exact Python type
  uint64_t dispatch_keys;
  PyObject* dtype;        // torch.dtype
  PyObject* device_type;  // interned str
  int32_t device_index;
  int32_t requires_grad;  // 0 or 1
  int64_t ndim;
  const int64_t* sizes;    // ndim entries; FC_TENSOR_DYNAMIC where not compared
  const int64_t* strides;  // ndim entries; FC_TENSOR_DYNAMIC where not compared
};

// A size or stride that FcTensorExpect does not compare (TensorMatch::kDynamic).
#define FC_TENSOR_DYNAMIC INT64_MIN

struct FcTorchApi {
  uint32_t version;           // FRAMECACHE_TORCH_API_VERSION
  uint32_t struct_size;       // sizeof(FcTorchApi)
  const char* torch_version;  // torch.__version__ at build time
  // Reads `tensor` (borrowed; must be an instance of torch._C.TensorBase).
  // Returns 0, or -1 with a Python exception set (symbolic sizes, an error
  // raised by a subclass's custom sizes).
  int (*read_tensor)(PyObject* tensor, FcTensorMeta* out);
  // Reads the calling thread's state. Returns 0, or -1 with an exception set.
  int (*read_global_state)(FcGlobalState* out);
  // Mode stack entries, bottom first; borrowed, or null when out of range.
  PyObject* (*function_mode_at)(int64_t index);
  PyObject* (*dispatch_mode_at)(int64_t index);
  // The batched TENSOR_MATCH: compares values[i] (borrowed, any object)
  // against expect[i] for i in [0, n), reading the thread's dispatch-key TLS
  // once, and returns the index of the first value it does not accept, or n
  // when it accepts them all. It accepts only what TENSOR_MATCH passes; it
  // stops, without deciding, at anything it cannot read cheaply and without
  // running Python (another type, a tensor with the Python dispatch key,
  // symbolic or custom sizes, an undefined tensor), so the caller decides
  // values[result] and beyond through read_tensor. Never raises, never runs
  // Python, never leaves an exception set.
  size_t (*accept_tensors)(PyObject* const* values, const FcTensorExpect* expect, size_t n);
};

}  // namespace framecache::guards

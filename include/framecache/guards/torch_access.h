// How the core reads torch: a tensor's metadata and the thread's ambient
// state, through framecache._torch_C's C table (torch_api.h) when it was
// built and is enabled, else through Python attributes and functions.
//
// The two readers fill the same structs with the same borrowed singletons
// (torch.dtype objects, interned device-type names), so a guard built while
// one reader is in force checks correctly under the other: the switch
// (set_fast_path_enabled) may be flipped at any time.
//
// Nothing here imports torch on its own: ensure_loaded() does, and it is
// called by the builders of torch guards only. `import framecache` never
// imports torch.
#pragma once

#include <Python.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "framecache/guards/torch_api.h"
#include "framecache/ref.h"

namespace framecache::guards::torch_access {

namespace detail {
// The fast part's table while it is loaded and enabled, else null.
extern const FcTorchApi* active_api;
}  // namespace detail

// Imports torch, prepares the Python reader and loads the fast part if it
// was built (once). Returns false with an exception set (ImportError when
// torch is not installed). Needs the GIL.
bool ensure_loaded();
// True once ensure_loaded() has succeeded.
bool loaded();

// `obj` (borrowed) is an instance of torch._C.TensorBase. False while torch
// is not loaded (no tensor can exist then).
bool is_tensor(PyObject* obj);
// type(obj) is torch.Tensor or torch.nn.Parameter exactly (borrowed).
bool is_plain_tensor(PyObject* obj);
// `type` (borrowed) is torch.Tensor or torch.nn.Parameter.
bool is_plain_tensor_type(PyObject* type);

// One tensor's metadata; owns what the Python reader had to create.
class TensorMetadata {
 public:
  FcTensorMeta meta;

 private:
  friend bool read_tensor_slow(PyObject* tensor, TensorMetadata& out);
  static constexpr size_t kInlineDims = 8;
  std::array<int64_t, 2 * kInlineDims> inline_;  // sizes then strides
  std::vector<int64_t> heap_;
  Ref dtype_;
  Ref device_type_;
};

// The Python reader; read_tensor() picks it when the fast part is off.
bool read_tensor_slow(PyObject* tensor, TensorMetadata& out);

// Reads `tensor` (borrowed; is_tensor() must hold). Returns false with an
// exception set.
inline bool read_tensor(PyObject* tensor, TensorMetadata& out) {
  const FcTorchApi* api = detail::active_api;
  if (api != nullptr) return api->read_tensor(tensor, &out.meta) == 0;
  return read_tensor_slow(tensor, out);
}

// The batched TENSOR_MATCH (FcTorchApi::accept_tensors) when the fast part is
// in force, else null.
inline size_t (*batch_reader())(PyObject* const*, const FcTensorExpect*, size_t) {
  const FcTorchApi* api = detail::active_api;
  return api != nullptr ? api->accept_tensors : nullptr;
}

// The thread's ambient state; owns what the Python reader had to create.
class GlobalStateReading {
 public:
  FcGlobalState state;

 private:
  friend bool read_global_state(GlobalStateReading& out);
  std::array<Ref, 3> dtypes_;
};
// Returns false with an exception set.
bool read_global_state(GlobalStateReading& out);
// Entry `index` of the torch-function / dispatch mode stack, bottom first:
// new reference, or null with an exception set.
Ref function_mode_at(int64_t index);
Ref dispatch_mode_at(int64_t index);

// torch.utils._device.DeviceContext, the mode behind torch.set_default_device
// and `with torch.device(...)` (borrowed; null before ensure_loaded()).
PyObject* device_context_type();

// torch._C.DispatchKeySet.from_raw_repr(raw) as text (slow; for messages).
std::string dispatch_keys_repr(uint64_t raw);
// "cpu", "cuda:0": a device as torch prints it.
std::string device_text(PyObject* device_type, int32_t device_index);

// The switch between the two readers.
bool fast_path_available();  // _torch_C is built, loaded and matches torch
bool fast_path_enabled();
// Returns the previous setting. Enabling has no effect while unavailable.
bool set_fast_path_enabled(bool enabled);
// A sentence on the fast part: loaded, not built, refused (and why), or not
// loaded yet.
std::string fast_path_status();

}  // namespace framecache::guards::torch_access

// Accessors on a tensor's metadata: L['x'].size()[i], L['x'].stride()[i] and
// L['x'].storage_offset(), each a Python int.
//
// For a plain torch.Tensor or nn.Parameter, the value is read in C++ when
// framecache._torch_C is loaded (torch_access.h); otherwise, and for tensor
// subclasses (whose Python methods may be overridden), by calling the
// method the source names. A negative index counts from the end, as in
// Python. A value that is not a tensor, or an index outside its dimensions,
// fails the guard.
#pragma once

#include <Python.h>

#include <memory>
#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

class TensorPropertyAccessor final : public GuardAccessor {
 public:
  enum class Property { kSize, kStride, kStorageOffset };
  // index: ignored for kStorageOffset.
  TensorPropertyAccessor(std::string key, std::unique_ptr<GuardManager> child, Property property,
                         Py_ssize_t index);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Property property_;
  Py_ssize_t index_;
  Ref method_;  // interned "size", "stride" or "storage_offset"
};

// Adds L['x'].size()[index] / .stride()[index] / .storage_offset() under
// `node` (torch_access::ensure_loaded() must have succeeded).
GuardManager& add_tensor_size(GuardManager& node, Py_ssize_t index);
GuardManager& add_tensor_stride(GuardManager& node, Py_ssize_t index);
GuardManager& add_tensor_storage_offset(GuardManager& node);

}  // namespace framecache::guards

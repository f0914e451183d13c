// TENSOR_MATCH: a value is a tensor with the metadata a compiled graph was
// specialised for.
//
// Compared, in this order: the exact Python type; then, read in one go
// through torch_access (C++ when framecache._torch_C is loaded, Python
// attributes otherwise): the dispatch key set with the thread's local
// include/exclude sets applied (so inference_mode or autocast changes fail
// it, as in torch), dtype, device (type and index), requires_grad, ndim, and
// each size and stride except those marked dynamic. The storage offset and
// the data are not part of it (torch's tensor guard leaves them out too; use
// the tensor_storage_offset() accessor for the former).
#pragma once

#include <Python.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/object_identity.h"
#include "framecache/guards/torch_api.h"
#include "framecache/ref.h"

namespace framecache::guards {

class TensorMatch final : public LeafGuard {
 public:
  // Marks a size or stride that is not compared.
  static constexpr int64_t kDynamic = std::numeric_limits<int64_t>::min();

  // Builds the guard from `tensor` (borrowed; torch_access::is_tensor() must
  // hold). dynamic_sizes / dynamic_strides: one flag per dimension, true for
  // a dimension whose size / stride is not compared. Returns null with a
  // Python exception set if the tensor's metadata cannot be read.
  static std::unique_ptr<TensorMatch> create(PyObject* tensor,
                                             const std::vector<bool>& dynamic_sizes,
                                             const std::vector<bool>& dynamic_strides);

  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "TENSOR_MATCH"; }
  // The answer also depends on the thread's dispatch-key state.
  bool depends_only_on_value() const override { return false; }

  const std::vector<int64_t>& sizes() const { return sizes_; }      // kDynamic where unchecked
  const std::vector<int64_t>& strides() const { return strides_; }  // kDynamic where unchecked
  // Fills what the batched check (FcTorchApi::accept_tensors) compares, with
  // pointers into this guard. False when the guard is not for a plain
  // torch.Tensor or torch.nn.Parameter (types that live as long as torch, so
  // the expected type can be compared by address).
  bool fill_expect(FcTensorExpect& out) const;

 private:
  explicit TensorMatch(PyObject* type);
  ObjectIdentity type_;
  std::string type_name_;
  uint64_t dispatch_keys_ = 0;
  Ref dtype_;        // torch.dtype
  Ref device_type_;  // interned str
  int32_t device_index_ = -1;
  bool requires_grad_ = false;
  int64_t ndim_ = 0;
  std::vector<int64_t> sizes_;
  std::vector<int64_t> strides_;
};

// "torch.Tensor", "torch.nn.parameter.Parameter", "int": a type as messages
// name it (module and qualified name; no module for builtins).
std::string qualified_type_name(PyTypeObject* type);

}  // namespace framecache::guards

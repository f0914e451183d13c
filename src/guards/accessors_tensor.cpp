// Accessors on a tensor's sizes, strides and storage offset.
#include "framecache/guards/accessors_tensor.h"

#include <stdexcept>

#include "framecache/guards/torch_access.h"

namespace framecache::guards {

namespace {
const char* method_name(TensorPropertyAccessor::Property p) {
  switch (p) {
    case TensorPropertyAccessor::Property::kSize: return "size";
    case TensorPropertyAccessor::Property::kStride: return "stride";
    case TensorPropertyAccessor::Property::kStorageOffset: return "storage_offset";
  }
  return "?";
}
}  // namespace

TensorPropertyAccessor::TensorPropertyAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                               Property property, Py_ssize_t index)
    : GuardAccessor(std::move(key), std::move(child)),
      property_(property),
      index_(index),
      method_(Ref::steal(PyUnicode_InternFromString(method_name(property)))) {
  if (!method_) throw std::runtime_error("could not create a str for a tensor accessor");
}

Ref TensorPropertyAccessor::fetch(PyObject* parent, const FrameInputs&) {
  if (!torch_access::is_tensor(parent)) return Ref();
  if (torch_access::fast_path_enabled() && torch_access::is_plain_tensor(parent)) {
    torch_access::TensorMetadata md;
    if (!torch_access::read_tensor(parent, md)) return Ref();
    const FcTensorMeta& m = md.meta;
    if (property_ == Property::kStorageOffset)
      return Ref::steal(PyLong_FromLongLong(m.storage_offset));
    const int64_t i = index_ < 0 ? index_ + m.ndim : index_;
    if (i < 0 || i >= m.ndim) return Ref();
    return Ref::steal(
        PyLong_FromLongLong(property_ == Property::kSize ? m.sizes[i] : m.strides[i]));
  }
  Ref result = Ref::steal(PyObject_CallMethodNoArgs(parent, method_.get()));
  if (!result || property_ == Property::kStorageOffset) return result;
  // An index outside the dimensions fails without an exception, as above.
  const Py_ssize_t n = PyObject_Length(result.get());
  if (n < 0) return Ref();
  if (index_ >= n || index_ < -n) return Ref();
  return Ref::steal(PySequence_GetItem(result.get(), index_));
}

std::string TensorPropertyAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  if (!torch_access::is_tensor(parent)) return "expected a tensor, got " + type_name(parent);
  if (property_ == Property::kStorageOffset) return "could not read the storage offset";
  Ref ndim = Ref::steal(PyObject_CallMethod(parent, "dim", nullptr));
  const long n = ndim ? PyLong_AsLong(ndim.get()) : -1;
  PyErr_Clear();
  if (n >= 0 && (index_ >= n || index_ < -n)) {
    return "index " + std::to_string(index_) + " is out of range for a " + std::to_string(n) +
           "-d tensor";
  }
  return "could not read " + std::string(method_name(property_)) + "()[" + std::to_string(index_) +
         "]";
}

std::string TensorPropertyAccessor::describe() const {
  if (property_ == Property::kStorageOffset) return "TensorStorageOffset()";
  return std::string(property_ == Property::kSize ? "TensorSize(" : "TensorStride(") +
         std::to_string(index_) + ")";
}

namespace {
GuardManager& add_property(GuardManager& node, TensorPropertyAccessor::Property p, Py_ssize_t index,
                           const std::string& key, const std::string& source) {
  return node.get_or_add_accessor(key, source, [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<TensorPropertyAccessor>(key, std::move(child), p, index);
  });
}
}  // namespace

GuardManager& add_tensor_size(GuardManager& node, Py_ssize_t index) {
  const std::string i = std::to_string(index);
  return add_property(node, TensorPropertyAccessor::Property::kSize, index, "tensor_size:" + i,
                      node.source() + ".size()[" + i + "]");
}

GuardManager& add_tensor_stride(GuardManager& node, Py_ssize_t index) {
  const std::string i = std::to_string(index);
  return add_property(node, TensorPropertyAccessor::Property::kStride, index, "tensor_stride:" + i,
                      node.source() + ".stride()[" + i + "]");
}

GuardManager& add_tensor_storage_offset(GuardManager& node) {
  return add_property(node, TensorPropertyAccessor::Property::kStorageOffset, 0,
                      "tensor_storage_offset", node.source() + ".storage_offset()");
}

}  // namespace framecache::guards

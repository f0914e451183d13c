// TENSOR_MATCH: capture at build time, compare at check time.
#include "framecache/guards/leaf_guards_tensor.h"

#include "framecache/guards/torch_access.h"

namespace framecache::guards {

namespace {

std::string utf8(PyObject* s) {
  const char* c = s ? PyUnicode_AsUTF8(s) : nullptr;
  if (c == nullptr) {
    PyErr_Clear();
    return "?";
  }
  return c;
}

std::string int_list(const std::vector<int64_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += ", ";
    out += v[i] == TensorMatch::kDynamic ? "None" : std::to_string(v[i]);
  }
  return out + "]";
}

const char* bool_text(bool b) { return b ? "True" : "False"; }

}  // namespace

std::string qualified_type_name(PyTypeObject* type) {
  PyObject *et, *ev, *tb;
  PyErr_Fetch(&et, &ev, &tb);
  std::string out = type->tp_name;
  PyObject* t = reinterpret_cast<PyObject*>(type);
  Ref module = Ref::steal(PyObject_GetAttrString(t, "__module__"));
  Ref qualname = Ref::steal(PyObject_GetAttrString(t, "__qualname__"));
  if (module && qualname && PyUnicode_Check(module.get()) && PyUnicode_Check(qualname.get())) {
    const std::string m = utf8(module.get());
    out = (m == "builtins" ? "" : m + ".") + utf8(qualname.get());
  }
  PyErr_Clear();
  PyErr_Restore(et, ev, tb);
  return out;
}

TensorMatch::TensorMatch(PyObject* type)
    : type_(type), type_name_(qualified_type_name(reinterpret_cast<PyTypeObject*>(type))) {}

std::unique_ptr<TensorMatch> TensorMatch::create(PyObject* tensor,
                                                 const std::vector<bool>& dynamic_sizes,
                                                 const std::vector<bool>& dynamic_strides) {
  torch_access::TensorMetadata md;
  if (!torch_access::read_tensor(tensor, md)) return nullptr;
  const FcTensorMeta& m = md.meta;
  std::unique_ptr<TensorMatch> g(new TensorMatch(reinterpret_cast<PyObject*>(Py_TYPE(tensor))));
  g->dispatch_keys_ = m.dispatch_keys;
  g->dtype_ = Ref::borrow(m.dtype);
  g->device_type_ = Ref::borrow(m.device_type);
  g->device_index_ = m.device_index;
  g->requires_grad_ = m.requires_grad != 0;
  g->ndim_ = m.ndim;
  g->sizes_.assign(m.sizes, m.sizes + m.ndim);
  g->strides_.assign(m.strides, m.strides + m.ndim);
  for (int64_t i = 0; i < m.ndim; ++i) {
    const auto k = static_cast<size_t>(i);
    if (k < dynamic_sizes.size() && dynamic_sizes[k]) g->sizes_[k] = kDynamic;
    if (k < dynamic_strides.size() && dynamic_strides[k]) g->strides_[k] = kDynamic;
  }
  return g;
}

bool TensorMatch::check(PyObject* value) {
  if (!type_.is(reinterpret_cast<PyObject*>(Py_TYPE(value)))) return false;
  torch_access::TensorMetadata md;
  if (!torch_access::read_tensor(value, md)) {
    consume_check_error();
    return false;
  }
  const FcTensorMeta& m = md.meta;
  if (m.dispatch_keys != dispatch_keys_ || m.dtype != dtype_.get() ||
      m.device_type != device_type_.get() || m.device_index != device_index_ ||
      (m.requires_grad != 0) != requires_grad_ || m.ndim != ndim_) {
    return false;
  }
  const int64_t* sizes = sizes_.data();
  const int64_t* strides = strides_.data();
  for (int64_t i = 0; i < ndim_; ++i) {
    if (sizes[i] != m.sizes[i] && sizes[i] != kDynamic) return false;
    if (strides[i] != m.strides[i] && strides[i] != kDynamic) return false;
  }
  return true;
}

static_assert(TensorMatch::kDynamic == FC_TENSOR_DYNAMIC);

bool TensorMatch::fill_expect(FcTensorExpect& out) const {
  PyObject* type = type_.get();
  if (type == nullptr || !torch_access::is_plain_tensor_type(type)) return false;
  out.type = reinterpret_cast<PyTypeObject*>(type);
  out.dispatch_keys = dispatch_keys_;
  out.dtype = dtype_.get();
  out.device_type = device_type_.get();
  out.device_index = device_index_;
  out.requires_grad = requires_grad_ ? 1 : 0;
  out.ndim = ndim_;
  out.sizes = sizes_.data();
  out.strides = strides_.data();
  return true;
}

std::string TensorMatch::explain(PyObject* value) {
  if (type_.get() == nullptr) return "expected type " + type_name_ + ", which no longer exists";
  if (!type_.is(reinterpret_cast<PyObject*>(Py_TYPE(value)))) {
    return "type mismatch, expected " + type_name_ + ", got " + qualified_type_name(Py_TYPE(value));
  }
  torch_access::TensorMetadata md;
  if (!torch_access::read_tensor(value, md)) {
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    std::string why = ev ? safe_repr(ev, 160) : "error";
    PyErr_Restore(et, ev, tb);
    consume_check_error();
    return "could not read the tensor's metadata (" + why + ")";
  }
  const FcTensorMeta& m = md.meta;
  // Most specific first: a device change also changes the dispatch keys, but
  // "device mismatch" is the useful sentence.
  if (m.dtype != dtype_.get()) {
    return "dtype mismatch, expected " + safe_repr(dtype_.get()) + ", got " + safe_repr(m.dtype);
  }
  if (m.device_type != device_type_.get() || m.device_index != device_index_) {
    return "device mismatch, expected " +
           torch_access::device_text(device_type_.get(), device_index_) + ", got " +
           torch_access::device_text(m.device_type, m.device_index);
  }
  if ((m.requires_grad != 0) != requires_grad_) {
    return std::string("requires_grad mismatch, expected ") + bool_text(requires_grad_) + ", got " +
           bool_text(m.requires_grad != 0);
  }
  if (m.ndim != ndim_) {
    return "ndim mismatch, expected " + std::to_string(ndim_) + ", got " + std::to_string(m.ndim);
  }
  for (int64_t i = 0; i < ndim_; ++i) {
    const int64_t want = sizes_[static_cast<size_t>(i)];
    if (want != kDynamic && want != m.sizes[i]) {
      return "size mismatch at dim " + std::to_string(i) + ", expected " + std::to_string(want) +
             ", got " + std::to_string(m.sizes[i]);
    }
  }
  for (int64_t i = 0; i < ndim_; ++i) {
    const int64_t want = strides_[static_cast<size_t>(i)];
    if (want != kDynamic && want != m.strides[i]) {
      return "stride mismatch at dim " + std::to_string(i) + ", expected " + std::to_string(want) +
             ", got " + std::to_string(m.strides[i]);
    }
  }
  if (m.dispatch_keys != dispatch_keys_) {
    return "dispatch key set mismatch, expected " +
           torch_access::dispatch_keys_repr(dispatch_keys_) + ", got " +
           torch_access::dispatch_keys_repr(m.dispatch_keys);
  }
  return "tensor metadata matches (the failure came from a concurrent change)";
}

std::string TensorMatch::describe() const {
  return "TENSOR_MATCH(" + type_name_ + ", " + safe_repr(dtype_.get()) + ", " +
         torch_access::device_text(device_type_.get(), device_index_) +
         ", requires_grad=" + bool_text(requires_grad_) + ", size=" + int_list(sizes_) +
         ", stride=" + int_list(strides_) + ")";
}

}  // namespace framecache::guards

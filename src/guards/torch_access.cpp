// Reading torch from the core: loading the fast part, the Python reader, and
// the switch between them.
#include "framecache/guards/torch_access.h"

#include <cstring>
#include <memory>

namespace framecache::guards::torch_access {

namespace detail {
const FcTorchApi* active_api = nullptr;
}  // namespace detail

namespace {

// What the Python reader calls, looked up once. Never freed: the interpreter
// may already be finalised when static destructors run, and these live as
// long as torch does anyway.
struct PythonTorch {
  Ref tensor_base;  // torch._C.TensorBase
  Ref tensor_type;  // torch.Tensor
  Ref parameter_type;
  Ref device_context_type;
  Ref dispatch_key_set_type;
  // Functions.
  Ref dispatch_keys, tls_include, tls_exclude;
  Ref is_grad_enabled, is_autocast_enabled, get_autocast_dtype, is_autocast_cache_enabled;
  Ref get_default_dtype, deterministic, deterministic_warn_only;
  Ref torch_function_enabled, torch_function_all_disabled;
  Ref function_stack_len, function_stack_at, dispatch_stack_len, dispatch_stack_at;
  // Interned names and constant arguments.
  Ref s_dtype, s_device, s_type, s_index, s_requires_grad, s_shape, s_stride, s_raw_repr;
  Ref s_storage_offset, s_from_raw_repr, s_cpu, s_cuda;
};

PythonTorch* g_py = nullptr;
const FcTorchApi* g_loaded_api = nullptr;  // loaded, whether enabled or not
bool g_fast_enabled = true;
std::string g_status = "not loaded yet (no torch guard has been built)";


Ref attr(PyObject* obj, const char* name) { return Ref::steal(PyObject_GetAttrString(obj, name)); }

Ref call0(const Ref& fn) { return Ref::steal(PyObject_CallNoArgs(fn.get())); }

Ref call1(const Ref& fn, PyObject* arg) { return Ref::steal(PyObject_CallOneArg(fn.get(), arg)); }

// Truth of a new reference returned by a call; -1 with an exception set.
int truth(const Ref& r) { return r ? PyObject_IsTrue(r.get()) : -1; }

bool int64_of(PyObject* o, int64_t* out) {
  const long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

// Fills every field of a PythonTorch and `version` (torch.__version__); false
// with an exception set.
bool init_python_torch(PythonTorch& p, Ref& version) {
  Ref torch = Ref::steal(PyImport_ImportModule("torch"));
  if (!torch) return false;
  version = attr(torch.get(), "__version__");
  if (!version) return false;
  Ref C = attr(torch.get(), "_C");
  Ref nn = Ref::steal(PyImport_ImportModule("torch.nn"));
  Ref device_mod = Ref::steal(PyImport_ImportModule("torch.utils._device"));
  if (!C || !nn || !device_mod) return false;
  struct Named {
    Ref* slot;
    PyObject* owner;
    const char* name;
  };
  const Named named[] = {
      {&p.tensor_base, C.get(), "TensorBase"},
      {&p.tensor_type, torch.get(), "Tensor"},
      {&p.parameter_type, nn.get(), "Parameter"},
      {&p.device_context_type, device_mod.get(), "DeviceContext"},
      {&p.dispatch_key_set_type, C.get(), "DispatchKeySet"},
      {&p.dispatch_keys, C.get(), "_dispatch_keys"},
      {&p.tls_include, C.get(), "_dispatch_tls_local_include_set"},
      {&p.tls_exclude, C.get(), "_dispatch_tls_local_exclude_set"},
      {&p.is_grad_enabled, C.get(), "is_grad_enabled"},
      {&p.is_autocast_enabled, C.get(), "is_autocast_enabled"},
      {&p.get_autocast_dtype, C.get(), "get_autocast_dtype"},
      {&p.is_autocast_cache_enabled, C.get(), "is_autocast_cache_enabled"},
      {&p.get_default_dtype, C.get(), "get_default_dtype"},
      {&p.deterministic, C.get(), "_get_deterministic_algorithms"},
      {&p.deterministic_warn_only, C.get(), "_get_deterministic_algorithms_warn_only"},
      {&p.torch_function_enabled, C.get(), "_is_torch_function_enabled"},
      {&p.torch_function_all_disabled, C.get(), "_is_torch_function_all_disabled"},
      {&p.function_stack_len, C.get(), "_len_torch_function_stack"},
      {&p.function_stack_at, C.get(), "_get_function_stack_at"},
      {&p.dispatch_stack_len, C.get(), "_len_torch_dispatch_stack"},
      {&p.dispatch_stack_at, C.get(), "_get_dispatch_stack_at"},
  };
  for (const Named& n : named) {
    *n.slot = attr(n.owner, n.name);
    if (!*n.slot) return false;
  }
  struct Interned {
    Ref* slot;
    const char* text;
  };
  const Interned strings[] = {
      {&p.s_dtype, "dtype"},
      {&p.s_device, "device"},
      {&p.s_type, "type"},
      {&p.s_index, "index"},
      {&p.s_requires_grad, "requires_grad"},
      {&p.s_shape, "shape"},
      {&p.s_stride, "stride"},
      {&p.s_raw_repr, "raw_repr"},
      {&p.s_storage_offset, "storage_offset"},
      {&p.s_from_raw_repr, "from_raw_repr"},
      {&p.s_cpu, "cpu"},
      {&p.s_cuda, "cuda"},
  };
  for (const Interned& s : strings) {
    *s.slot = Ref::steal(PyUnicode_InternFromString(s.text));
    if (!*s.slot) return false;
  }
  return true;
}

// The text of the pending exception (cleared), for status lines.
std::string take_error_text() {
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  Ref v = Ref::steal(value), t = Ref::steal(type), b = Ref::steal(tb);
  Ref text = v ? Ref::steal(PyObject_Str(v.get())) : Ref();
  const char* s = text ? PyUnicode_AsUTF8(text.get()) : nullptr;
  std::string out = s ? s : "unknown error";
  PyErr_Clear();
  return out;
}

// Reads a few probe tensors with both readers and compares every field: a
// table that disagrees with Python on any of them is not used. Returns an
// empty string when they agree, else what differed. The probes cover inline
// and out-of-line sizes (ndim 2 and 7), a strided view with a storage offset,
// requires_grad on a leaf and on a non-leaf, and another dtype.
std::string validate_api(const FcTorchApi* api) {
  static const char* const kProbes =
      "import torch\n"
      "a = torch.zeros(3, 5)\n"
      "w = torch.ones(2, 3, requires_grad=True)\n"
      "probes = [a, a.t()[1:], torch.zeros(1, 2, 1, 3, 1, 2, 2, dtype=torch.float16),\n"
      "          w, w * 2, torch.arange(10, dtype=torch.int64)[2::3]]\n";
  Ref ns = Ref::steal(PyDict_New());
  if (!ns) return take_error_text();
  Ref builtins = Ref::borrow(PyEval_GetBuiltins());
  if (PyDict_SetItemString(ns.get(), "__builtins__", builtins.get()) < 0) return take_error_text();
  Ref ran = Ref::steal(PyRun_String(kProbes, Py_file_input, ns.get(), ns.get()));
  if (!ran) return "the probe tensors could not be made: " + take_error_text();
  PyObject* probes = PyDict_GetItemString(ns.get(), "probes");  // borrowed
  if (probes == nullptr || !PyList_Check(probes)) return "no probe tensors";
  for (Py_ssize_t i = 0; i < PyList_GET_SIZE(probes); ++i) {
    PyObject* t = PyList_GET_ITEM(probes, i);  // borrowed
    FcTensorMeta fast{};
    TensorMetadata slow;
    if (api->read_tensor(t, &fast) != 0) return "reading a probe failed: " + take_error_text();
    if (!read_tensor_slow(t, slow)) return "the Python reader failed: " + take_error_text();
    const FcTensorMeta& m = slow.meta;
    bool same = fast.dispatch_keys == m.dispatch_keys && fast.dtype == m.dtype &&
                fast.device_type == m.device_type && fast.device_index == m.device_index &&
                fast.requires_grad == m.requires_grad && fast.ndim == m.ndim;
    for (int64_t d = 0; same && d < m.ndim; ++d) {
      same = fast.sizes[d] == m.sizes[d] && fast.strides[d] == m.strides[d];
    }
    if (!same) return "probe tensor " + std::to_string(i) + " reads differently than in Python";
  }
  return "";
}

// Loads framecache._torch_C for the running torch through
// framecache._torch_build (prebuilt, cached, or compiled now) and checks its
// table. Never fails: an unusable fast part leaves the Python reader in force,
// and says why in the status and in one RuntimeWarning.
void load_fast_part(PyObject* torch_version) {
  auto refuse = [](std::string why) {
    g_status = "off: " + why + "; tensor guards read through Python (about 7 us per TENSOR_MATCH instead of tens of ns)";
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    const std::string text = "framecache: the C++ tensor reader is " + g_status;
    // Once per process (this runs once); an error from the warning (a filter
    // turning warnings into errors) must not fail the guard being built.
    if (PyErr_WarnEx(PyExc_RuntimeWarning, text.c_str(), 1) < 0) PyErr_Clear();
    PyErr_Restore(type, value, tb);
  };
  Ref builder = Ref::steal(PyImport_ImportModule("framecache._torch_build"));
  Ref mod = builder ? Ref::steal(PyObject_CallMethod(builder.get(), "load", nullptr)) : Ref();
  if (!mod) {
    refuse(take_error_text());
    return;
  }
  Ref origin = builder ? attr(builder.get(), "origin") : Ref();
  const char* origin_text = origin && PyUnicode_Check(origin.get()) ? PyUnicode_AsUTF8(origin.get())
                                                                    : nullptr;
  PyErr_Clear();
  Ref capsule = attr(mod.get(), "_api");
  auto* api = capsule ? static_cast<const FcTorchApi*>(
                            PyCapsule_GetPointer(capsule.get(), FRAMECACHE_TORCH_API_CAPSULE))
                      : nullptr;
  if (api == nullptr) {
    PyErr_Clear();
    refuse("framecache._torch_C has no API capsule");
    return;
  }
  if (api->version != FRAMECACHE_TORCH_API_VERSION || api->struct_size != sizeof(FcTorchApi)) {
    refuse("framecache._torch_C was built for another framecache version");
    return;
  }
  const char* running = PyUnicode_AsUTF8(torch_version);
  if (running == nullptr) {
    PyErr_Clear();
    running = "?";
  }
  if (std::strcmp(running, api->torch_version) != 0) {
    refuse(std::string("framecache._torch_C was built against torch ") + api->torch_version +
           " but torch " + running + " is running");
    return;
  }
  const std::string mismatch = validate_api(api);
  if (!mismatch.empty()) {
    refuse("framecache._torch_C disagrees with torch's Python view (" + mismatch + ")");
    return;
  }
  g_loaded_api = api;
  g_status = std::string("on: C++ reader for torch ") + api->torch_version + " (" +
             (origin_text ? origin_text : "loaded") + ")";
}

void refresh_active() { detail::active_api = g_fast_enabled ? g_loaded_api : nullptr; }

}  // namespace

bool ensure_loaded() {
  if (g_py != nullptr) return true;
  auto p = std::make_unique<PythonTorch>();
  Ref version;
  if (!init_python_torch(*p, version)) return false;
  // Imports can let the GIL go: another thread may have finished first.
  if (g_py != nullptr) return true;
  g_py = p.release();
  load_fast_part(version.get());
  refresh_active();
  return true;
}

bool loaded() { return g_py != nullptr; }

bool is_tensor(PyObject* obj) {
  if (g_py == nullptr) return false;
  return PyObject_TypeCheck(obj, reinterpret_cast<PyTypeObject*>(g_py->tensor_base.get()));
}

bool is_plain_tensor(PyObject* obj) {
  if (g_py == nullptr) return false;
  PyObject* t = reinterpret_cast<PyObject*>(Py_TYPE(obj));
  return t == g_py->tensor_type.get() || t == g_py->parameter_type.get();
}

bool is_plain_tensor_type(PyObject* type) {
  return g_py != nullptr && (type == g_py->tensor_type.get() || type == g_py->parameter_type.get());
}

bool read_tensor_slow(PyObject* tensor, TensorMetadata& out) {
  const PythonTorch& p = *g_py;
  FcTensorMeta& m = out.meta;
  // Dispatch keys, with the thread's local include/exclude sets applied
  // through DispatchKeySet's own operators (its `-` keeps backend bits).
  {
    Ref keys = call1(p.dispatch_keys, tensor);
    Ref inc = keys ? call0(p.tls_include) : Ref();
    Ref exc = inc ? call0(p.tls_exclude) : Ref();
    Ref with = exc ? Ref::steal(PyNumber_Or(keys.get(), inc.get())) : Ref();
    Ref applied = with ? Ref::steal(PyNumber_Subtract(with.get(), exc.get())) : Ref();
    Ref raw =
        applied ? Ref::steal(PyObject_CallMethodNoArgs(applied.get(), p.s_raw_repr.get())) : Ref();
    if (!raw) return false;
    m.dispatch_keys = PyLong_AsUnsignedLongLong(raw.get());
    if (m.dispatch_keys == static_cast<uint64_t>(-1) && PyErr_Occurred()) return false;
  }
  out.dtype_ = Ref::steal(PyObject_GetAttr(tensor, p.s_dtype.get()));
  if (!out.dtype_) return false;
  m.dtype = out.dtype_.get();
  {
    Ref device = Ref::steal(PyObject_GetAttr(tensor, p.s_device.get()));
    Ref type = device ? Ref::steal(PyObject_GetAttr(device.get(), p.s_type.get())) : Ref();
    Ref index = type ? Ref::steal(PyObject_GetAttr(device.get(), p.s_index.get())) : Ref();
    if (!index) return false;
    if (!PyUnicode_CheckExact(type.get())) {
      PyErr_SetString(PyExc_TypeError, "tensor.device.type is not a str");
      return false;
    }
    PyObject* interned = type.release();
    PyUnicode_InternInPlace(&interned);
    out.device_type_ = Ref::steal(interned);
    m.device_type = interned;
    int64_t idx = -1;
    if (index.get() != Py_None && !int64_of(index.get(), &idx)) return false;
    m.device_index = static_cast<int32_t>(idx);
  }
  {
    Ref rg = Ref::steal(PyObject_GetAttr(tensor, p.s_requires_grad.get()));
    const int v = truth(rg);
    if (v < 0) return false;
    m.requires_grad = v;
  }
  Ref shape = Ref::steal(PyObject_GetAttr(tensor, p.s_shape.get()));
  Ref stride = shape ? Ref::steal(PyObject_CallMethodNoArgs(tensor, p.s_stride.get())) : Ref();
  if (!stride) return false;
  if (!PyTuple_Check(shape.get()) || !PyTuple_Check(stride.get()) ||
      PyTuple_GET_SIZE(shape.get()) != PyTuple_GET_SIZE(stride.get())) {
    PyErr_SetString(PyExc_TypeError, "tensor.shape / tensor.stride() are not tuples of one length");
    return false;
  }
  const Py_ssize_t n = PyTuple_GET_SIZE(shape.get());
  int64_t* buf = out.inline_.data();
  if (static_cast<size_t>(n) > TensorMetadata::kInlineDims) {
    out.heap_.resize(2 * static_cast<size_t>(n));
    buf = out.heap_.data();
  }
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!int64_of(PyTuple_GET_ITEM(shape.get(), i), &buf[i])) return false;
    if (!int64_of(PyTuple_GET_ITEM(stride.get(), i), &buf[n + i])) return false;
  }
  m.ndim = n;
  m.sizes = buf;
  m.strides = buf + n;
  // Only the storage_offset accessor uses it, and it calls Python itself on
  // this path.
  m.storage_offset = -1;
  return true;
}

bool read_global_state(GlobalStateReading& out) {
  FcGlobalState& s = out.state;
  if (detail::active_api != nullptr) return detail::active_api->read_global_state(&s) == 0;
  const PythonTorch& p = *g_py;
  int v;
  if ((v = truth(call0(p.is_grad_enabled))) < 0) return false;
  s.grad_enabled = v;
  if ((v = truth(call1(p.is_autocast_enabled, p.s_cpu.get()))) < 0) return false;
  s.autocast_cpu_enabled = v;
  if ((v = truth(call1(p.is_autocast_enabled, p.s_cuda.get()))) < 0) return false;
  s.autocast_cuda_enabled = v;
  if ((v = truth(call0(p.is_autocast_cache_enabled))) < 0) return false;
  s.autocast_cache_enabled = v;
  out.dtypes_[0] = call1(p.get_autocast_dtype, p.s_cpu.get());
  out.dtypes_[1] = call1(p.get_autocast_dtype, p.s_cuda.get());
  out.dtypes_[2] = call0(p.get_default_dtype);
  if (!out.dtypes_[0] || !out.dtypes_[1] || !out.dtypes_[2]) return false;
  s.autocast_cpu_dtype = out.dtypes_[0].get();
  s.autocast_cuda_dtype = out.dtypes_[1].get();
  s.default_dtype = out.dtypes_[2].get();
  if ((v = truth(call0(p.deterministic))) < 0) return false;
  s.deterministic_algorithms = v;
  if ((v = truth(call0(p.deterministic_warn_only))) < 0) return false;
  s.deterministic_warn_only = v;
  const int enabled = truth(call0(p.torch_function_enabled));
  if (enabled < 0) return false;
  const int all_disabled = enabled ? 0 : truth(call0(p.torch_function_all_disabled));
  if (all_disabled < 0) return false;
  s.torch_function_state = enabled        ? kTorchFunctionEnabled
                           : all_disabled ? kTorchFunctionAllDisabled
                                          : kTorchFunctionSubclassesDisabled;
  Ref n = call0(p.function_stack_len);
  if (!n || !int64_of(n.get(), &s.function_mode_count)) return false;
  n = call0(p.dispatch_stack_len);
  if (!n || !int64_of(n.get(), &s.dispatch_mode_count)) return false;
  return true;
}

namespace {
Ref mode_at(PyObject* (*fast)(int64_t), const Ref& slow, int64_t index) {
  if (detail::active_api != nullptr) {
    PyObject* m = fast(index);
    if (m == nullptr) {
      PyErr_Format(PyExc_IndexError, "mode stack index %lld out of range",
                   static_cast<long long>(index));
    }
    return Ref::borrow(m);
  }
  Ref i = Ref::steal(PyLong_FromLongLong(index));
  return i ? call1(slow, i.get()) : Ref();
}
}  // namespace

Ref function_mode_at(int64_t index) {
  return mode_at(detail::active_api ? detail::active_api->function_mode_at : nullptr,
                 g_py->function_stack_at, index);
}

Ref dispatch_mode_at(int64_t index) {
  return mode_at(detail::active_api ? detail::active_api->dispatch_mode_at : nullptr,
                 g_py->dispatch_stack_at, index);
}

PyObject* device_context_type() { return g_py ? g_py->device_context_type.get() : nullptr; }

std::string dispatch_keys_repr(uint64_t raw) {
  std::string out = "DispatchKeySet(raw=" + std::to_string(raw) + ")";
  if (g_py == nullptr) return out;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Ref n = Ref::steal(PyLong_FromUnsignedLongLong(raw));
  Ref ks = n ? Ref::steal(PyObject_CallMethodOneArg(g_py->dispatch_key_set_type.get(),
                                                    g_py->s_from_raw_repr.get(), n.get()))
             : Ref();
  Ref r = ks ? Ref::steal(PyObject_Repr(ks.get())) : Ref();
  const char* s = r ? PyUnicode_AsUTF8(r.get()) : nullptr;
  if (s != nullptr) out = s;
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
  return out;
}

std::string device_text(PyObject* device_type, int32_t device_index) {
  const char* s = device_type ? PyUnicode_AsUTF8(device_type) : nullptr;
  if (s == nullptr) {
    PyErr_Clear();
    s = "?";
  }
  std::string out = s;
  if (device_index >= 0) out += ":" + std::to_string(device_index);
  return out;
}

bool fast_path_available() { return g_loaded_api != nullptr; }
bool fast_path_enabled() { return detail::active_api != nullptr; }

bool set_fast_path_enabled(bool enabled) {
  const bool previous = g_fast_enabled;
  g_fast_enabled = enabled;
  refresh_active();
  return previous;
}

std::string fast_path_status() {
  if (g_loaded_api != nullptr && !g_fast_enabled) return g_status + ", disabled by the switch";
  return g_status;
}

}  // namespace framecache::guards::torch_access

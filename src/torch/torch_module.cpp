// framecache._torch_C: the optional part of framecache compiled against the
// installed torch. It reads a tensor's metadata and torch's thread-local state
// in C++ for TENSOR_MATCH and GLOBAL_STATE, and hands the core a table of
// function pointers in a capsule (include/framecache/guards/torch_api.h).
//
// Kept to one translation unit with the few torch headers it needs: each TU
// that includes torch's headers costs ~30 s to compile.
#include <ATen/Context.h>
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DefaultDtype.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/DynamicTypes.h>
#include <torch/csrc/PyInterpreter.h>
#include <torch/csrc/autograd/python_variable.h>

#include <array>
#include <cstring>

#include "framecache/guards/torch_api.h"

#ifndef FRAMECACHE_TORCH_VERSION
#error "FRAMECACHE_TORCH_VERSION (torch.__version__ at build time) must be defined by the build"
#endif

namespace {

using framecache::guards::FcGlobalState;
using framecache::guards::FcTensorExpect;
using framecache::guards::FcTensorMeta;
using framecache::guards::FcTorchApi;

// Interned names of device types, made on first use (with the GIL held) and
// kept for the life of the process, as torch keeps its dtype objects.
std::array<PyObject*, static_cast<size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)>
    g_device_type_names{};

// Borrowed interned name of `type`, as torch.device.type spells it.
PyObject* device_type_name(c10::DeviceType type) {
  const auto i = static_cast<size_t>(type);
  if (i >= g_device_type_names.size()) {
    PyErr_SetString(PyExc_ValueError, "unknown device type");
    return nullptr;
  }
  if (g_device_type_names[i] == nullptr) {
    const std::string name = c10::DeviceTypeName(type, /*lower_case=*/true);
    g_device_type_names[i] = PyUnicode_InternFromString(name.c_str());
  }
  return g_device_type_names[i];
}

// Sets a Python exception for whatever a torch call threw.
void set_error_from_current_exception() {
  try {
    throw;
  } catch (python_error& e) {
    e.restore();
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception while reading torch state");
  }
}

// torch.dtype objects by ScalarType, filled on first use (with the GIL held);
// torch keeps them for the life of the process. Saves a call into
// libtorch_python per tensor read.
std::array<PyObject*, static_cast<size_t>(c10::ScalarType::NumOptions)> g_dtypes{};

PyObject* dtype_object(c10::ScalarType t) {
  const auto i = static_cast<size_t>(t);
  if (i < g_dtypes.size() && g_dtypes[i] != nullptr) return g_dtypes[i];
  PyObject* d = reinterpret_cast<PyObject*>(torch::getTHPDtype(t));
  if (d == nullptr) {
    PyErr_SetString(PyExc_ValueError, "dtype without a torch.dtype object");
    return nullptr;
  }
  if (i < g_dtypes.size()) g_dtypes[i] = d;
  return d;
}

int read_tensor(PyObject* obj, FcTensorMeta* out) noexcept {
  try {
    const at::Tensor& tensor = THPVariable_Unpack(obj);
    if (!tensor.defined()) {
      PyErr_SetString(PyExc_ValueError, "undefined tensor");
      return -1;
    }
    c10::TensorImpl* impl = tensor.unsafeGetTensorImpl();
    if (impl->has_symbolic_sizes_strides()) {
      PyErr_SetString(PyExc_TypeError, "tensor has symbolic sizes or strides");
      return -1;
    }
    const c10::impl::LocalDispatchKeySet tls = c10::impl::tls_local_dispatch_key_set();
    out->dispatch_keys = ((impl->key_set() | tls.included_) - tls.excluded_).raw_repr();
    out->dtype = dtype_object(impl->dtype().toScalarType());
    const c10::Device device = impl->device();
    out->device_type = device_type_name(device.type());
    if (out->dtype == nullptr || out->device_type == nullptr) return -1;
    out->device_index = device.index();
    out->requires_grad = impl->requires_grad() ? 1 : 0;
    const c10::IntArrayRef sizes = impl->sizes();
    const c10::IntArrayRef strides = impl->strides();
    out->ndim = static_cast<int64_t>(sizes.size());
    out->sizes = sizes.data();
    out->strides = strides.data();
    out->storage_offset = impl->storage_offset();
    return 0;
  } catch (...) {
    set_error_from_current_exception();
    return -1;
  }
}

// Whether `obj` matches `e`, read without running Python: 1 yes, 0 no or
// undecided (the caller decides it through read_tensor). May throw.
bool accept_one(PyObject* obj, const FcTensorExpect& e, const c10::impl::LocalDispatchKeySet& tls) {
  if (Py_TYPE(obj) != e.type) return false;
  const at::Tensor& tensor = THPVariable_Unpack(obj);
  if (!tensor.defined()) return false;
  c10::TensorImpl* impl = tensor.unsafeGetTensorImpl();
  const c10::DispatchKeySet keys = impl->key_set();
  // A Python-dispatched tensor (a wrapper subclass) may answer sizes() or
  // requires_grad in Python: left to the caller.
  if (keys.has(c10::DispatchKey::Python) || impl->has_symbolic_sizes_strides()) return false;
  if (((keys | tls.included_) - tls.excluded_).raw_repr() != e.dispatch_keys) return false;
  const auto st = static_cast<size_t>(impl->dtype().toScalarType());
  if (st >= g_dtypes.size() || g_dtypes[st] != e.dtype) return false;
  const c10::Device device = impl->device();
  const auto dt = static_cast<size_t>(device.type());
  if (dt >= g_device_type_names.size() || g_device_type_names[dt] != e.device_type ||
      device.index() != e.device_index) {
    return false;
  }
  if ((impl->requires_grad() ? 1 : 0) != e.requires_grad) return false;
  const c10::IntArrayRef sizes = impl->sizes();
  if (static_cast<int64_t>(sizes.size()) != e.ndim) return false;
  const c10::IntArrayRef strides = impl->strides();
  const int64_t* sz = sizes.data();
  const int64_t* sd = strides.data();
  for (int64_t i = 0; i < e.ndim; ++i) {
    if (e.sizes[i] != sz[i] && e.sizes[i] != FC_TENSOR_DYNAMIC) return false;
    if (e.strides[i] != sd[i] && e.strides[i] != FC_TENSOR_DYNAMIC) return false;
  }
  return true;
}

// The dtype and device-type singletons compared above are those read_tensor
// filled in (g_dtypes, g_device_type_names): a guard's expected values were
// read through it (or through Python, which yields the same objects), so an
// entry not filled yet cannot be expected and the comparison fails, leaving
// the value to read_tensor.
size_t accept_tensors(PyObject* const* values, const FcTensorExpect* expect, size_t n) noexcept {
  size_t i = 0;
  try {
    const c10::impl::LocalDispatchKeySet tls = c10::impl::tls_local_dispatch_key_set();
    for (; i < n; ++i) {
      if (!accept_one(values[i], expect[i], tls)) return i;
    }
  } catch (...) {
    // Undecided: read_tensor raises the same error for the caller.
  }
  return i;
}

int read_global_state(FcGlobalState* out) noexcept {
  try {
    out->grad_enabled = c10::GradMode::is_enabled();
    out->autocast_cpu_enabled = at::autocast::is_autocast_enabled(at::kCPU);
    out->autocast_cuda_enabled = at::autocast::is_autocast_enabled(at::kCUDA);
    out->autocast_cache_enabled = at::autocast::is_autocast_cache_enabled();
    out->autocast_cpu_dtype = dtype_object(at::autocast::get_autocast_dtype(at::kCPU));
    out->autocast_cuda_dtype = dtype_object(at::autocast::get_autocast_dtype(at::kCUDA));
    out->default_dtype = dtype_object(c10::get_default_dtype_as_scalartype());
    if (!out->autocast_cpu_dtype || !out->autocast_cuda_dtype || !out->default_dtype) return -1;
    const at::Context& ctx = at::globalContext();
    out->deterministic_algorithms = ctx.deterministicAlgorithms();
    out->deterministic_warn_only = ctx.deterministicAlgorithmsWarnOnly();
    out->torch_function_state =
        static_cast<int32_t>(at::impl::PythonTorchFunctionTLS::get_disabled_state());
    out->function_mode_count = at::impl::PythonTorchFunctionTLS::stack_len();
    out->dispatch_mode_count = c10::impl::TorchDispatchModeTLS::stack_len();
    return 0;
  } catch (...) {
    set_error_from_current_exception();
    return -1;
  }
}

PyObject* function_mode_at(int64_t index) noexcept {
  try {
    if (index < 0 || index >= at::impl::PythonTorchFunctionTLS::stack_len()) return nullptr;
    return at::impl::PythonTorchFunctionTLS::get_stack_at(index)->ptr(getPyInterpreter());
  } catch (...) {
    return nullptr;
  }
}

PyObject* dispatch_mode_at(int64_t index) noexcept {
  try {
    if (index < 0 || index >= c10::impl::TorchDispatchModeTLS::stack_len()) return nullptr;
    return c10::impl::TorchDispatchModeTLS::get_stack_at(index)->ptr(getPyInterpreter());
  } catch (...) {
    return nullptr;
  }
}

// The enum values the core relies on (torch_api.h restates them).
static_assert(at::impl::TorchFunctionDisabledState::ENABLED == 0);
static_assert(at::impl::TorchFunctionDisabledState::SUBCLASSES_DISABLED == 1);
static_assert(at::impl::TorchFunctionDisabledState::ALL_DISABLED == 2);

const FcTorchApi kApi = {
    FRAMECACHE_TORCH_API_VERSION, sizeof(FcTorchApi), FRAMECACHE_TORCH_VERSION, &read_tensor,
    &read_global_state,           &function_mode_at,  &dispatch_mode_at,  &accept_tensors,
};

PyModuleDef g_module = {
    PyModuleDef_HEAD_INIT,
    "framecache._torch_C",
    "framecache's optional torch part: reads tensor metadata and torch's ambient state in C++ "
    "for TENSOR_MATCH and GLOBAL_STATE. Loaded by the core; not meant to be used directly.",
    -1,       // m_size: no per-module state
    nullptr,  // m_methods
    nullptr,  // m_slots
    nullptr,  // m_traverse
    nullptr,  // m_clear
    nullptr,  // m_free
};

}  // namespace

PyMODINIT_FUNC PyInit__torch_C() {
  // torch's Python types (THPVariableClass, the dtype objects) exist only
  // once torch itself is imported; refuse to load against another version.
  PyObject* torch = PyImport_ImportModule("torch");
  if (torch == nullptr) return nullptr;
  PyObject* version = PyObject_GetAttrString(torch, "__version__");
  Py_DECREF(torch);
  if (version == nullptr) return nullptr;
  const char* running = PyUnicode_AsUTF8(version);
  if (running == nullptr || std::strcmp(running, FRAMECACHE_TORCH_VERSION) != 0) {
    if (running != nullptr) {
      PyErr_Format(PyExc_ImportError,
                   "framecache._torch_C was built against torch %s but torch %s is running",
                   FRAMECACHE_TORCH_VERSION, running);
    }
    Py_DECREF(version);
    return nullptr;
  }
  Py_DECREF(version);
  PyObject* module = PyModule_Create(&g_module);
  if (module == nullptr) return nullptr;
  PyObject* capsule =
      PyCapsule_New(const_cast<FcTorchApi*>(&kApi), FRAMECACHE_TORCH_API_CAPSULE, nullptr);
  if (capsule == nullptr || PyModule_AddObject(module, "_api", capsule) < 0) {
    Py_XDECREF(capsule);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

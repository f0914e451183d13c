// Builder methods for the torch guards: TENSOR_MATCH, GLOBAL_STATE (on the
// root), the tensor_size / tensor_stride / tensor_storage_offset accessors,
// and the switch between the C++ and the Python reader of torch state.
#include "framecache/bindings.h"
#include "framecache/builder_args.h"
#include "framecache/guards/accessors_tensor.h"
#include "framecache/guards/leaf_guards_global_state.h"
#include "framecache/guards/leaf_guards_tensor.h"
#include "framecache/guards/torch_access.h"

namespace framecache {

using guards::GuardManager;
namespace torch_access = guards::torch_access;

namespace {

// Loads torch support for a builder that needs torch in any case.
void require_torch(const char* method) {
  if (torch_access::loaded()) return;
  if (!torch_access::ensure_loaded()) {
    py::error_already_set err;
    throw py::import_error(std::string(method) + " needs torch, which could not be imported: " +
                           py::str(err.value()).cast<std::string>());
  }
}

// True if `obj` is a tensor, loading torch support only if torch is already
// imported (if it is not, no tensor can exist).
bool is_tensor_arg(py::handle obj) {
  if (!torch_access::loaded()) {
    PyObject* modules = PyImport_GetModuleDict();  // borrowed
    if (PyDict_GetItemString(modules, "torch") == nullptr) return false;
    require_torch("tensor_match()");
  }
  return torch_access::is_tensor(obj.ptr());
}

// A set of dimensions of an `ndim`-d tensor from an iterable of ints, as flags.
std::vector<bool> dims_arg(const char* method, const char* arg, py::handle dims, int64_t ndim) {
  if (PyUnicode_Check(dims.ptr()) || PyBytes_Check(dims.ptr()) ||
      !py::isinstance<py::iterable>(dims)) {
    throw py::type_error(std::string(method) + " expects " + arg + " as an iterable of ints, got " +
                         Py_TYPE(dims.ptr())->tp_name);
  }
  std::vector<bool> flags(static_cast<size_t>(ndim), false);
  const std::string what = std::string(method) + " " + arg;
  for (py::handle d : dims) {
    Py_ssize_t i = builder_index(what.c_str(), d, true);
    if (i < -ndim || i >= ndim) {
      throw py::value_error(what + ": dim " + std::to_string(i) + " is out of range for a " +
                            std::to_string(ndim) + "-d tensor");
    }
    if (i < 0) i += ndim;
    flags[static_cast<size_t>(i)] = true;
  }
  return flags;
}

// The strides left unchecked by default: stride i may change with a dynamic
// size when another dynamic dim j has stride[j] <= stride[i] (for a dense
// tensor, stride i is the product of the sizes of the dims inside it).
std::vector<bool> derived_dynamic_strides(const std::vector<bool>& dynamic_sizes,
                                          const std::vector<int64_t>& strides) {
  std::vector<bool> out(strides.size(), false);
  for (size_t i = 0; i < strides.size(); ++i) {
    for (size_t j = 0; j < strides.size(); ++j) {
      if (j != i && dynamic_sizes[j] && strides[j] <= strides[i]) out[i] = true;
    }
  }
  return out;
}

// tensor.stride() as ints; a ValueError for a tensor without concrete strides.
std::vector<int64_t> concrete_strides(py::handle tensor) {
  std::vector<int64_t> out;
  try {
    for (py::handle v : tensor.attr("stride")()) out.push_back(v.cast<int64_t>());
  } catch (const py::error_already_set& e) {
    throw py::value_error(std::string("tensor_match() needs a tensor with concrete strides: ") +
                          e.what());
  } catch (const py::cast_error&) {
    throw py::value_error("tensor_match() needs a tensor with concrete (int) strides");
  }
  return out;
}

}  // namespace

void bind_leaf_guards_tensor(py::module_& m, GuardManagerClass& cls) {
  cls.def(
         "tensor_match",
         [](GuardManager& g, py::handle tensor, py::handle dynamic_dims,
            py::handle dynamic_strides) -> GuardManager& {
           if (!is_tensor_arg(tensor)) {
             throw py::type_error(std::string("tensor_match() expects a torch.Tensor, got ") +
                                  Py_TYPE(tensor.ptr())->tp_name);
           }
           const std::vector<int64_t> strides = concrete_strides(tensor);
           const auto ndim = static_cast<int64_t>(strides.size());
           std::vector<bool> dyn_sizes =
               dims_arg("tensor_match()", "dynamic_dims", dynamic_dims, ndim);
           std::vector<bool> dyn_strides =
               dynamic_strides.is_none()
                   ? derived_dynamic_strides(dyn_sizes, strides)
                   : dims_arg("tensor_match()", "dynamic_strides", dynamic_strides, ndim);
           auto leaf = guards::TensorMatch::create(tensor.ptr(), dyn_sizes, dyn_strides);
           if (!leaf) throw py::error_already_set();
           g.add_leaf(std::move(leaf));
           return g;
         },
         py::arg("tensor"), py::arg("dynamic_dims") = py::tuple(),
         py::arg("dynamic_strides") = py::none(), py::return_value_policy::reference,
         "TENSOR_MATCH: the value is a tensor of exactly type(tensor) with its dispatch keys\n"
         "(after the thread's local include/exclude sets), dtype, device, requires_grad,\n"
         "ndim, sizes and strides.\n\n"
         "dynamic_dims: dims whose size is not compared (negative counts from the end).\n"
         "dynamic_strides: dims whose stride is not compared. None (the default) derives\n"
         "them from dynamic_dims: stride i is skipped when another dynamic dim j has\n"
         "stride[j] <= stride[i], i.e. the strides of a dense tensor that contain a dynamic\n"
         "size. Pass () to compare every stride.")
      .def(
          "global_state",
          [](GuardManager& g) -> GuardManager& {
            if (!g.is_root()) {
              throw py::type_error(
                  "global_state() guards torch's ambient state, not a value: call it on the "
                  "RootGuardManager");
            }
            require_torch("global_state()");
            auto leaf = guards::GlobalStateMatch::create();
            if (!leaf) throw py::error_already_set();
            g.add_leaf(std::move(leaf));
            return g;
          },
          py::return_value_policy::reference,
          "GLOBAL_STATE (on the root): torch's grad mode, autocast state (cpu and cuda, with\n"
          "dtypes and the cache flag), default dtype, deterministic-algorithms flags,\n"
          "__torch_function__ state, torch-function and dispatch mode stacks (length and the\n"
          "type of each mode) and default device are as they are now.")
      .def(
          "tensor_size",
          [](GuardManager& g, py::handle index) -> GuardManager& {
            require_value_node("tensor_size()", g);
            const Py_ssize_t i = builder_index("tensor_size()", index, true);
            require_torch("tensor_size()");
            return guards::add_tensor_size(g, i);
          },
          py::arg("index"), py::return_value_policy::reference_internal,
          "The node for value.size()[index] (an int); fails on a non-tensor.")
      .def(
          "tensor_stride",
          [](GuardManager& g, py::handle index) -> GuardManager& {
            require_value_node("tensor_stride()", g);
            const Py_ssize_t i = builder_index("tensor_stride()", index, true);
            require_torch("tensor_stride()");
            return guards::add_tensor_stride(g, i);
          },
          py::arg("index"), py::return_value_policy::reference_internal,
          "The node for value.stride()[index] (an int); fails on a non-tensor.")
      .def(
          "tensor_storage_offset",
          [](GuardManager& g) -> GuardManager& {
            require_value_node("tensor_storage_offset()", g);
            require_torch("tensor_storage_offset()");
            return guards::add_tensor_storage_offset(g);
          },
          py::return_value_policy::reference_internal,
          "The node for value.storage_offset() (an int); fails on a non-tensor.");

  m.def("set_torch_fast_path", &torch_access::set_fast_path_enabled, py::arg("enabled"),
        "Read tensors and torch's state through framecache._torch_C (True, the default) or\n"
        "through Python attributes (False). Returns the previous setting. Both give the same\n"
        "results; the C++ reader is used only when it was built and matches the running torch.");
  m.def("torch_fast_path_enabled", &torch_access::fast_path_enabled,
        "True if torch guards currently read through framecache._torch_C.");
  m.def(
      "torch_fast_path_status",
      [] {
        // Loads torch support first if torch is imported, so that the answer
        // is about this process rather than "not loaded yet".
        PyObject* modules = PyImport_GetModuleDict();  // borrowed
        if (!torch_access::loaded() && PyDict_GetItemString(modules, "torch") != nullptr) {
          require_torch("torch_fast_path_status()");
        }
        return torch_access::fast_path_status();
      },
      "Whether framecache._torch_C is loaded, and why not if it is not.");
}

}  // namespace framecache

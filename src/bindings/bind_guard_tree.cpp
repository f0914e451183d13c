// Bindings for the guard tree: nodes, the root, verbose results, the frame
// accessors and introspection.
#include <pybind11/stl.h>

#include "framecache/bindings.h"
#include "framecache/guards/accessors_frame.h"
#include "framecache/guards/root_guard_manager.h"

namespace framecache {

namespace {

using guards::FrameInputs;
using guards::GuardDebugInfo;
using guards::GuardManager;
using guards::RootGuardManager;

std::string checked_name(const std::string& what, const py::handle& name) {
  if (!py::isinstance<py::str>(name)) {
    throw py::type_error(what + " expects a str name, got " + Py_TYPE(name.ptr())->tp_name);
  }
  std::string s = name.cast<std::string>();
  if (s.empty()) throw py::value_error(what + " expects a non-empty name");
  return s;
}

FrameInputs dict_inputs(const py::object& f_locals, const py::object& f_globals,
                        const py::object& bound_globals) {
  if (!PyDict_Check(f_locals.ptr())) {
    throw py::type_error(std::string("check() expects f_locals as a dict, got ") +
                         Py_TYPE(f_locals.ptr())->tp_name);
  }
  FrameInputs in;
  in.locals = f_locals.ptr();
  py::handle g = f_globals.is_none() ? bound_globals : f_globals;
  if (!g.is_none()) {
    if (!PyDict_Check(g.ptr())) {
      throw py::type_error(std::string("check() expects f_globals as a dict, got ") +
                           Py_TYPE(g.ptr())->tp_name);
    }
    in.globals = g.ptr();
    PyObject* b = PyDict_GetItemString(g.ptr(), "__builtins__");  // borrowed
    if (b != nullptr) in.builtins = b;
  }
  return in;
}

// A RootGuardManager that may remember the globals it was built for, used by
// check(f_locals) when no globals are passed.
struct PyRoot : RootGuardManager {
  py::object bound_globals = py::none();
};

// --- RootGuardManager.check without pybind11's dispatcher ------------------------
//
// check() is what Python calls per lookup, and pybind11's generic dispatcher
// (argument loaders, overload chain, return casting) cost ~95 of its ~127 ns
// with no guards. So the bound method is replaced by a METH_FASTCALL |
// METH_KEYWORDS method descriptor of the class: CPython checks that `self` is
// a RootGuardManager (descr_check), the arguments are parsed here with the
// same names, defaults and TypeErrors, and the tree is called directly.

const py::detail::type_info* g_root_type_info = nullptr;  // set by bind_guard_tree

// The PyRoot behind `self` (borrowed), or null with TypeError set when the
// object was never initialised (RootGuardManager.__new__ without __init__).
PyRoot* root_of(PyObject* self) {
  auto* inst = reinterpret_cast<py::detail::instance*>(self);
  py::detail::value_and_holder vh = inst->get_value_and_holder(g_root_type_info, false);
  if (!vh || !vh.holder_constructed() || vh.value_ptr() == nullptr) {
    PyErr_SetString(PyExc_TypeError, "RootGuardManager.check(): the root is not initialised");
    return nullptr;
  }
  return vh.value_ptr<PyRoot>();
}

// check(f_locals, f_globals=None). `self` and the arguments are borrowed;
// returns a new reference to True/False, or null with an exception set.
PyObject* fast_check(PyObject* self, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  static const char* const kUsage = "check(f_locals, f_globals=None)";
  PyObject* f_locals = nargs > 0 ? args[0] : nullptr;
  PyObject* f_globals = nargs > 1 ? args[1] : nullptr;
  if (nargs > 2) {
    PyErr_Format(PyExc_TypeError, "%s takes at most 2 arguments (%zd given)", kUsage, nargs);
    return nullptr;
  }
  if (kwnames != nullptr) {
    const Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; ++i) {
      PyObject* kw = PyTuple_GET_ITEM(kwnames, i);
      PyObject** slot = nullptr;
      if (PyUnicode_CompareWithASCIIString(kw, "f_locals") == 0) slot = &f_locals;
      if (PyUnicode_CompareWithASCIIString(kw, "f_globals") == 0) slot = &f_globals;
      if (slot == nullptr) {
        PyErr_Format(PyExc_TypeError, "%s got an unexpected keyword argument '%U'", kUsage, kw);
        return nullptr;
      }
      if (*slot != nullptr) {
        PyErr_Format(PyExc_TypeError, "%s got multiple values for argument '%U'", kUsage, kw);
        return nullptr;
      }
      *slot = args[nargs + i];
    }
  }
  if (f_locals == nullptr) {
    PyErr_Format(PyExc_TypeError, "%s missing required argument 'f_locals'", kUsage);
    return nullptr;
  }
  PyRoot* root = root_of(self);
  if (root == nullptr) return nullptr;
  if (!PyDict_Check(f_locals)) {
    PyErr_Format(PyExc_TypeError, "check() expects f_locals as a dict, got %s",
                 Py_TYPE(f_locals)->tp_name);
    return nullptr;
  }
  FrameInputs in;
  in.locals = f_locals;
  PyObject* g = (f_globals == nullptr || f_globals == Py_None) ? root->bound_globals.ptr() : f_globals;
  if (g != Py_None) {
    if (!PyDict_Check(g)) {
      PyErr_Format(PyExc_TypeError, "check() expects f_globals as a dict, got %s",
                   Py_TYPE(g)->tp_name);
      return nullptr;
    }
    in.globals = g;
    static PyObject* builtins_key = PyUnicode_InternFromString("__builtins__");  // immortal
    if (builtins_key == nullptr) return nullptr;
    PyObject* b = PyDict_GetItemWithError(g, builtins_key);  // borrowed
    if (b == nullptr && PyErr_Occurred()) return nullptr;
    if (b != nullptr) in.builtins = b;
  }
  int rc;
  try {
    rc = root->check_root(in);
  } catch (py::error_already_set& e) {
    e.restore();
    return nullptr;
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  if (rc < 0) return nullptr;
  return PyBool_FromLong(rc);
}

PyMethodDef g_fast_check_def = {
    "check", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&fast_check)),
    METH_FASTCALL | METH_KEYWORDS,
    "check($self, /, f_locals, f_globals=None)\n--\n\n"
    "True if every guard passes for these locals (a dict), with `f_globals` (or the "
    "globals the root was built with) for global and builtin guards."};

// Replaces the pybind11-bound check() of `cls` with the fast one.
void install_fast_check(const py::handle& cls) {
  g_root_type_info = py::detail::get_type_info(typeid(PyRoot));
  if (g_root_type_info == nullptr) throw std::runtime_error("RootGuardManager is not registered");
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &g_fast_check_def);
  if (descr == nullptr) throw py::error_already_set();
  const int rc = PyObject_SetAttrString(cls.ptr(), "check", descr);
  Py_DECREF(descr);
  if (rc < 0) throw py::error_already_set();
}

}  // namespace

GuardManagerClass bind_guard_tree(py::module_& m) {
  py::class_<GuardDebugInfo>(m, "GuardDebugInfo", "The result of check_verbose().")
      .def_readonly("result", &GuardDebugInfo::result)
      .def_readonly("failures", &GuardDebugInfo::failures)
      .def_readonly("num_guards_executed", &GuardDebugInfo::num_guards_executed)
      .def("__bool__", [](const GuardDebugInfo& i) { return i.result; })
      .def("__repr__", [](const GuardDebugInfo& i) {
        std::string s = std::string("GuardDebugInfo(result=") + (i.result ? "True" : "False") +
                        ", failures=[";
        for (size_t k = 0; k < i.failures.size(); ++k) {
          s += (k ? ", " : "") + py::repr(py::str(i.failures[k])).cast<std::string>();
        }
        return s + "], num_guards_executed=" + std::to_string(i.num_guards_executed) + ")";
      });

  GuardManagerClass cls(m, "GuardManager",
                        "A node of a guard tree: leaf guards on one value, and accessors to "
                        "child values.");
  cls.def_property_readonly("source", &GuardManager::source, "Where this node's value comes from.")
      .def("num_guards", &GuardManager::num_guards, "Leaf guards in this subtree.")
      .def("leaf_guards",
           [](const GuardManager& g) {
             py::list out;
             for (const auto& leaf : g.leaves()) out.append(py::make_tuple(leaf->kind(), leaf->describe()));
             return out;
           },
           "(kind, description) of each leaf guard, in check order.")
      .def("accessors",
           [](GuardManager& g) {
             py::list out;
             for (const auto& acc : g.accessors()) out.append(acc->describe());
             return out;
           },
           "A description of each accessor, in check order (fail-fast order).")
      .def("children",
           [](py::object self) {
             auto& g = self.cast<GuardManager&>();
             py::list out;
             for (const auto& acc : g.accessors()) {
               out.append(py::cast(&acc->child(), py::return_value_policy::reference_internal, self));
             }
             return out;
           },
           "The child node of each accessor, in check order.")
      .def("fail_counts",
           [](const GuardManager& g) {
             py::list out;
             for (const auto& acc : g.accessors()) out.append(acc->fail_count());
             return out;
           },
           "How often each accessor's subtree failed a check(), in check order.")
      .def("dict_version",
           [](GuardManager& g) -> GuardManager& {
             if (g.is_root()) {
               throw py::type_error(
                   "dict_version() needs a node whose value is a dict, not the root");
             }
             g.enable_dict_version();
             return g;
           },
           py::return_value_policy::reference,
           "DICT_VERSION: this node's value is a dict. While the dict is unchanged (its "
           "version tag), a dict_item() subtree that passed for an immutable item is not "
           "checked again; mutable items are always checked.")
      .def_property_readonly("dict_versioned", &GuardManager::dict_versioned,
                             "True once dict_version() was called on this node.")
      .def_property_readonly(
          "dict_version_reruns", &GuardManager::dict_version_reruns,
          "How many of this DICT_VERSION node's accessors the next check of the dict last "
          "seen, unchanged, runs again (mutable items such as tensors), skipping the rest at "
          "once; -1 when there is nothing to skip (no pass yet, the dict changed, a guard "
          "was added).")
      .def_property_readonly(
          "dict_version_frozen_items", &GuardManager::dict_version_frozen_items,
          "How many items of this DICT_VERSION node's dict the next check of the dict last "
          "seen, unchanged, answers from the item's own tag: dicts read only for their "
          "contents (a module's hook dicts), unchanged since they passed; -1 with no memo.")
      .def_property_readonly(
          "dict_version_skips_leaves", &GuardManager::dict_version_skips_leaves,
          "1 if the next check of the dict last seen, unchanged, skips this node's own "
          "leaves (they read its contents only and its keys are constants), 0 if they run; "
          "-1 with no memo.")
      .def("export",
           [](GuardManager& g, int32_t slot) -> GuardManager& {
             try {
               g.set_export(slot);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
             return g;
           },
           py::arg("slot"), py::return_value_policy::reference,
           "Hand the value this node checks to the root as export `slot` whenever a check "
           "passes (RootGuardManager.take_exports; the runtime moves them into the cached "
           "code's locals). A node with an export is reached by every passing check.")
      .def_property_readonly("export_slot", &GuardManager::export_slot,
                             "This node's export slot, or -1.")
      .def("__str__", [](const GuardManager& g) {
        std::string out;
        g.render(out, 0);
        return out;
      })
      .def("__repr__", [](const GuardManager& g) {
        return "<GuardManager " + g.source() + " (" + std::to_string(g.num_guards()) + " guards)>";
      });

  py::class_<RootGuardManager, GuardManager>(m, "RootGuardManager_",
                                             "Internal base of RootGuardManager.");
  py::class_<PyRoot, RootGuardManager> root_cls(m, "RootGuardManager",
                                       "The root of a guard tree, checked against a frame's "
                                       "locals (and globals).");
  root_cls.def(py::init([](py::object f_globals) {
             if (!f_globals.is_none() && !PyDict_Check(f_globals.ptr())) {
               throw py::type_error(std::string("RootGuardManager(f_globals=...) expects a dict, got ") +
                                    Py_TYPE(f_globals.ptr())->tp_name);
             }
             auto root = std::make_unique<PyRoot>();
             root->bound_globals = std::move(f_globals);
             return root;
           }),
           py::arg("f_globals") = py::none())
      .def("local",
           [](PyRoot& r, py::handle name) -> GuardManager& {
             return r.local(checked_name("local()", name));
           },
           py::arg("name"), py::return_value_policy::reference_internal,
           "The node for the frame local `name` (L['name']).")
      .def("global_",
           [](PyRoot& r, py::handle name) -> GuardManager& {
             return guards::add_global(r, checked_name("global_()", name));
           },
           py::arg("name"), py::return_value_policy::reference_internal,
           "The node for the global `name` (G['name']).")
      .def("builtin",
           [](PyRoot& r, py::handle name) -> GuardManager& {
             return guards::add_builtin(r, checked_name("builtin()", name));
           },
           py::arg("name"), py::return_value_policy::reference_internal,
           "The node for the builtin `name` (B['name']).")
      .def("check_verbose",
           [](PyRoot& r, py::object f_locals, py::object f_globals) {
             auto info = r.check_root_verbose(dict_inputs(f_locals, f_globals, r.bound_globals));
             if (PyErr_Occurred()) throw py::error_already_set();
             return info;
           },
           py::arg("f_locals"), py::arg("f_globals") = py::none(),
           "Every guard's result, with a readable reason for each failure.")
      .def("local_names", [](const PyRoot& r) { return r.local_names(); })
      .def("tensor_pass_size", [](PyRoot& r) { return r.tensor_pass_size(); },
           "How many frame locals check() reads in its flat tensor pass (nodes holding only "
           "TENSOR_MATCH and at most one relational member) rather than by walking them.")
      .def_property_readonly("num_exports", &RootGuardManager::num_exports,
                             "How many export slots the tree has (GuardManager.export).")
      .def("take_exports",
           [](PyRoot& r) {
             PyObject* out = r.take_exports();
             if (out == nullptr) throw py::error_already_set();
             return py::reinterpret_steal<py::object>(out);
           },
           "The exports of the last check, as a tuple in slot order, moved out of the tree; "
           "None when that check failed, did not reach every export, overlapped another "
           "check of this tree, or they were taken already.")
      .def("__str__", &RootGuardManager::render_tree)
      .def("__repr__", [](const PyRoot& r) {
        return "<RootGuardManager (" + std::to_string(r.num_guards()) + " guards)>";
      });
  install_fast_check(root_cls);
  return cls;
}

}  // namespace framecache

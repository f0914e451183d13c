// _C._call_with_callback(callback, fn, *args, **kwargs): the body of every
// framecache.compile wrapper, as one C call (no Python frame, no pybind
// argument conversion) so that a cached call pays as little as possible.
#include "framecache/bindings.h"
#include "framecache/eval_frame.h"

namespace framecache {

namespace {

// args[0] = callback, args[1] = fn, the rest go to fn. Returns a new reference.
PyObject* call_with_callback(PyObject*, PyObject* const* args, Py_ssize_t nargsf,
                             PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError, "_call_with_callback(callback, fn, *args, **kwargs)");
    return nullptr;
  }
  Ref previous = set_eval_frame_callback(args[0]);
  if (!previous) return nullptr;
  PyObject* result = PyObject_Vectorcall(args[1], args + 2, static_cast<size_t>(nargs - 2), kwnames);
  // Restore even when fn raised, keeping its exception.
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Ref restored = set_eval_frame_callback(previous.get());
  if (!restored) {
    // previous was valid when it was installed, so this cannot fail; keep fn's error if any.
    if (type != nullptr) PyErr_Clear();
  }
  if (type != nullptr) PyErr_Restore(type, value, tb);
  return result;
}

PyMethodDef kCallWithCallback = {
    "_call_with_callback", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&call_with_callback)),
    METH_FASTCALL | METH_KEYWORDS,
    "_call_with_callback(callback, fn, *args, **kwargs): call fn with this thread's callback "
    "set to `callback`, restoring the previous one afterwards."};

}  // namespace

void bind_call_with_callback(py::module_& m) {
  PyObject* fn = PyCFunction_NewEx(&kCallWithCallback, nullptr, m.attr("__name__").ptr());
  if (fn == nullptr) throw py::error_already_set();
  m.add_object("_call_with_callback", py::reinterpret_steal<py::object>(fn));
}

}  // namespace framecache

// Calling a torch.nn.Module's forward directly when its __call__ would only do that.
#include "framecache/module_call.h"

#include <vector>

#include "framecache/ref.h"

namespace framecache::module_call {

namespace {

// What configure() was given (strong references, never released: they live as
// long as torch, which is never unloaded), and interned names.
struct Facts {
  PyObject* call = nullptr;
  PyObject* wrapped_call_impl = nullptr;
  PyObject* call_impl = nullptr;
  PyObject* module_globals = nullptr;
  PyObject* tracing_state = nullptr;
  PyObject* object_getattribute = nullptr;  // object.__getattribute__ (borrowed from object)
  PyObject* name_call = nullptr;
  PyObject* name_wrapped = nullptr;
  PyObject* name_impl = nullptr;
  PyObject* name_getattribute = nullptr;
  PyObject* name_compiled = nullptr;
  PyObject* name_forward = nullptr;
  PyObject* hooks[4] = {};         // the module's own hook dicts, by name
  PyObject* global_hooks[4] = {};  // the module-level (global) ones, by name
};
Facts g_facts;

PyObject* intern(const char* s) {
  PyObject* name = PyUnicode_InternFromString(s);
  if (name == nullptr) PyErr_Clear();
  return name;
}

// The instance-dict-or-class value of attribute `name` of `module` (borrowed), as
// object.__getattribute__ finds it, when neither side is a descriptor that would
// compute it; null (no error) when the value cannot be read that simply.
PyObject* plain_attribute(PyObject* module, PyObject* dict, PyObject* name) {
  PyObject* descr = _PyType_Lookup(Py_TYPE(module), name);  // borrowed
  if (descr != nullptr && Py_TYPE(descr)->tp_descr_get != nullptr) return nullptr;
  if (dict != nullptr) {
    PyObject* value = PyDict_GetItemWithError(dict, name);  // borrowed
    if (value != nullptr) return value;
    if (PyErr_Occurred()) {
      PyErr_Clear();
      return nullptr;
    }
  }
  return descr;
}

// True if `d` (borrowed, may be null) is a dict with no items.
bool empty_dict(PyObject* d) { return d != nullptr && PyDict_Check(d) && PyDict_GET_SIZE(d) == 0; }

}  // namespace

bool configure(PyObject* call, PyObject* wrapped_call_impl, PyObject* call_impl,
               PyObject* module_globals, PyObject* tracing_state) {
  if (!PyFunction_Check(call) || !PyFunction_Check(wrapped_call_impl) ||
      !PyFunction_Check(call_impl) || !PyDict_Check(module_globals) ||
      !PyCallable_Check(tracing_state)) {
    PyErr_SetString(PyExc_TypeError,
                    "module_call.configure(call, wrapped_call_impl, call_impl, module_globals, "
                    "tracing_state): three functions, a dict and a callable");
    return false;
  }
  Facts f;
  f.name_call = intern("__call__");
  f.name_wrapped = intern("_wrapped_call_impl");
  f.name_impl = intern("_call_impl");
  f.name_getattribute = intern("__getattribute__");
  f.name_compiled = intern("_compiled_call_impl");
  f.name_forward = intern("forward");
  const char* hooks[4] = {"_backward_hooks", "_backward_pre_hooks", "_forward_hooks",
                          "_forward_pre_hooks"};
  const char* globals[4] = {"_global_backward_pre_hooks", "_global_backward_hooks",
                            "_global_forward_hooks", "_global_forward_pre_hooks"};
  bool ok = f.name_call && f.name_wrapped && f.name_impl && f.name_getattribute &&
            f.name_compiled && f.name_forward;
  for (int i = 0; i < 4; ++i) {
    f.hooks[i] = intern(hooks[i]);
    f.global_hooks[i] = intern(globals[i]);
    ok = ok && f.hooks[i] && f.global_hooks[i];
  }
  f.object_getattribute = _PyType_Lookup(&PyBaseObject_Type, f.name_getattribute);
  if (!ok || f.object_getattribute == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "module_call.configure: cannot make its names");
    return false;
  }
  f.call = Py_NewRef(call);
  f.wrapped_call_impl = Py_NewRef(wrapped_call_impl);
  f.call_impl = Py_NewRef(call_impl);
  f.module_globals = Py_NewRef(module_globals);
  f.tracing_state = Py_NewRef(tracing_state);
  g_facts = f;  // the previous facts' references are kept: see Facts
  return true;
}

namespace {
// plain_forward(), with the check of the type's __call__ left to the caller.
int plain_forward_of(PyObject* module, bool check_call, PyObject** forward) {
  const Facts& f = g_facts;
  if (f.call == nullptr) return 0;
  PyTypeObject* type = Py_TYPE(module);
  // Module.__call__ is _wrapped_call_impl, which calls _call_impl: the type must
  // use torch's, and look attributes up the ordinary way.
  if ((check_call && _PyType_Lookup(type, f.name_call) != f.call) ||
      _PyType_Lookup(type, f.name_wrapped) != f.wrapped_call_impl ||
      _PyType_Lookup(type, f.name_impl) != f.call_impl ||
      _PyType_Lookup(type, f.name_getattribute) != f.object_getattribute) {
    return 0;
  }
  PyObject** dict_ptr = _PyObject_GetDictPtr(module);
  PyObject* dict = dict_ptr != nullptr ? *dict_ptr : nullptr;  // borrowed
  if (dict == nullptr || !PyDict_Check(dict)) return 0;
  // _wrapped_call_impl: `if self._compiled_call_impl is not None`.
  if (plain_attribute(module, dict, f.name_compiled) != Py_None) return 0;
  // _call_impl's fast path: no hooks of the module's own, none global.
  for (PyObject* name : f.hooks) {
    if (!empty_dict(plain_attribute(module, dict, name))) return 0;
  }
  for (PyObject* name : f.global_hooks) {
    PyObject* hooks = PyDict_GetItemWithError(f.module_globals, name);  // borrowed
    if (hooks == nullptr && PyErr_Occurred()) return -1;
    if (!empty_dict(hooks)) return 0;
  }
  // `self._slow_forward if torch._C._get_tracing_state() else self.forward`.
  Ref tracing = Ref::steal(PyObject_CallNoArgs(f.tracing_state));
  if (!tracing) return -1;
  if (tracing.get() != Py_None) return 0;
  PyObject* fn = PyObject_GetAttr(module, f.name_forward);  // new
  if (fn == nullptr) return -1;
  *forward = fn;
  return 1;
}

// The body of the __call__ that install_call() puts on a class: forward when
// plain_forward_of says so, else torch's Module.__call__. New reference.
PyObject* dunder_call(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                      PyObject* kwnames) {
  PyObject* forward = nullptr;
  const int plain = plain_forward_of(self, /*check_call=*/false, &forward);
  if (plain < 0) return nullptr;
  if (plain == 1) {
    const Ref held = Ref::steal(forward);
    return PyObject_Vectorcall(forward, args, static_cast<size_t>(nargs), kwnames);
  }
  if (g_facts.call == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "framecache: module_call is not configured");
    return nullptr;
  }
  // Module.__call__(self, *args, **kwargs).
  const Py_ssize_t nkw = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
  std::vector<PyObject*> all(static_cast<size_t>(1 + nargs + nkw));
  all[0] = self;
  for (Py_ssize_t i = 0; i < nargs + nkw; ++i) all[static_cast<size_t>(1 + i)] = args[i];
  return PyObject_Vectorcall(g_facts.call, all.data(), static_cast<size_t>(1 + nargs), kwnames);
}

PyMethodDef kDunderCall = {
    "__call__", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&dunder_call)),
    METH_FASTCALL | METH_KEYWORDS,
    "Call self as a function: forward(*args, **kwargs) when torch's Module.__call__ would do "
    "only that (no hooks, no tracing), else Module.__call__ itself."};
}  // namespace

int plain_forward(PyObject* module, PyObject** forward) {
  return plain_forward_of(module, /*check_call=*/true, forward);
}

bool install_call(PyObject* cls) {
  if (!PyType_Check(cls)) {
    PyErr_SetString(PyExc_TypeError, "install_call expects a class");
    return false;
  }
  PyObject* descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls), &kDunderCall);
  if (descr == nullptr) return false;
  const int rc = PyObject_SetAttrString(cls, "__call__", descr);
  Py_DECREF(descr);
  return rc == 0;
}

PyObject* call(PyObject* module, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  PyObject* forward = nullptr;
  const int plain = plain_forward(module, &forward);
  if (plain < 0) return nullptr;
  if (plain == 0) return PyObject_Vectorcall(module, args, nargsf, kwnames);
  const Ref held = Ref::steal(forward);
  return PyObject_Vectorcall(forward, args, nargsf, kwnames);
}

}  // namespace framecache::module_call

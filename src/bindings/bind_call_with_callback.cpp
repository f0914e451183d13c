// Calling a function with this thread's callback in force: the body of every
// framecache.compile'd function, as C (no Python frame, no pybind argument
// conversion) so that a cached call pays as little as possible.
//
//  - _C._call_with_callback(callback, fn, *args, **kwargs): one call.
//  - _C.CompiledFunction(fn, callback, stance_var, default_stance, resolve, tag=0,
//    module=False):
//    the object framecache.compile returns for a function (and an
//    OptimizedModule calls). `tag` is the options tag of its compile options:
//    entries compiled through it carry it and only they are looked up. Calling it reads
//    the stance (a contextvars.ContextVar) in C; when the stance is
//    `default_stance` it installs `callback`, otherwise `resolve(callback)`
//    (Python: framecache.stances.active_callback) says what to install. It
//    binds as a method like a function does and has a __dict__, so
//    functools.update_wrapper gives it fn's name, doc and __wrapped__.
#include <cstddef>

#include "framecache/bindings.h"
#include "framecache/eval_frame.h"
#include "framecache/module_call.h"

namespace framecache {

namespace {

// Calls fn(*args, **kwnames) with this thread's callback set to `callback`,
// restoring the previous one afterwards, also when fn raised. All arguments
// borrowed; returns a new reference or null with an error set.
// With `module`, fn is a torch.nn.Module called through module_call::call (its
// forward directly when its __call__ would only call that).
PyObject* call_under(PyObject* callback, uint64_t tag, PyObject* fn, PyObject* const* args,
                     Py_ssize_t nargs, PyObject* kwnames, bool module = false) {
  const uint64_t previous_tag = get_eval_frame_tag();
  Ref previous = set_eval_frame_callback(callback, tag);
  if (!previous) return nullptr;
  PyObject* result =
      module ? module_call::call(fn, args, static_cast<size_t>(nargs), kwnames)
             : PyObject_Vectorcall(fn, args, static_cast<size_t>(nargs), kwnames);
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  Ref restored = set_eval_frame_callback(previous.get(), previous_tag);
  if (!restored) {
    // previous was valid when it was installed, so this cannot fail; keep fn's error if any.
    if (type != nullptr) PyErr_Clear();
  }
  if (type != nullptr) PyErr_Restore(type, value, tb);
  return result;
}

// args[0] = callback, args[1] = fn, the rest go to fn. Returns a new reference.
PyObject* call_with_callback(PyObject*, PyObject* const* args, Py_ssize_t nargsf,
                             PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  if (nargs < 2) {
    PyErr_SetString(PyExc_TypeError, "_call_with_callback(callback, fn, *args, **kwargs)");
    return nullptr;
  }
  return call_under(args[0], 0, args[1], args + 2, nargs - 2, kwnames);
}

PyMethodDef kCallWithCallback = {
    "_call_with_callback", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&call_with_callback)),
    METH_FASTCALL | METH_KEYWORDS,
    "_call_with_callback(callback, fn, *args, **kwargs): call fn with this thread's callback "
    "set to `callback`, restoring the previous one afterwards."};

// ---- CompiledFunction ------------------------------------------------------

struct CompiledFunction {
  PyObject_HEAD
  PyObject* fn;              // the user's function (owned)
  PyObject* callback;        // the CompileContext (owned)
  PyObject* stance_var;      // contextvars.ContextVar of the stance (owned)
  PyObject* default_stance;  // the stance value meaning "use callback" (owned)
  PyObject* resolve;         // resolve(callback) -> what to install otherwise (owned)
  PyObject* dict;            // __dict__ (owned, may be null)
  PyObject* weakrefs;
  vectorcallfunc vectorcall;
  uint64_t tag;  // the options tag its entries carry, whatever the stance installs
  bool module;   // fn is a torch.nn.Module: called through module_call::call
};

CompiledFunction* as_cf(PyObject* self) { return reinterpret_cast<CompiledFunction*>(self); }

// Returns a new reference.
PyObject* cf_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  CompiledFunction* cf = as_cf(self);
  PyObject* stance = nullptr;  // new reference (null: the variable has no value)
  if (PyContextVar_Get(cf->stance_var, nullptr, &stance) < 0) return nullptr;
  Ref stance_ref = Ref::steal(stance);
  Ref callback;
  if (stance == nullptr || stance == cf->default_stance) {
    callback = Ref::borrow(cf->callback);
  } else {
    callback = Ref::steal(PyObject_CallOneArg(cf->resolve, cf->callback));
    if (!callback) return nullptr;
  }
  return call_under(callback.get(), cf->tag, cf->fn, args, PyVectorcall_NARGS(nargsf), kwnames,
                    cf->module);
}

// CompiledFunction(fn, callback, stance_var, default_stance, resolve, tag=0, module=False).
// New reference.
PyObject* cf_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  PyObject *fn, *callback, *stance_var, *default_stance, *resolve;  // borrowed
  unsigned long long tag = 0;
  int module = 0;
  static const char* names[] = {"fn",      "callback", "stance_var", "default_stance",
                                "resolve", "tag",      "module",     nullptr};
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO|Kp:CompiledFunction",
                                   const_cast<char**>(names), &fn, &callback, &stance_var,
                                   &default_stance, &resolve, &tag, &module)) {
    return nullptr;
  }
  if (!PyCallable_Check(fn) || !PyCallable_Check(resolve)) {
    PyErr_SetString(PyExc_TypeError, "CompiledFunction: fn and resolve must be callable");
    return nullptr;
  }
  if (!PyContextVar_CheckExact(stance_var)) {
    PyErr_SetString(PyExc_TypeError, "CompiledFunction: stance_var must be a ContextVar");
    return nullptr;
  }
  PyObject* self = type->tp_alloc(type, 0);
  if (self == nullptr) return nullptr;
  CompiledFunction* cf = as_cf(self);
  cf->fn = Py_NewRef(fn);
  cf->callback = Py_NewRef(callback);
  cf->stance_var = Py_NewRef(stance_var);
  cf->default_stance = Py_NewRef(default_stance);
  cf->resolve = Py_NewRef(resolve);
  cf->dict = nullptr;
  cf->weakrefs = nullptr;
  cf->vectorcall = cf_vectorcall;
  cf->tag = tag;
  cf->module = module != 0;
  return self;
}

int cf_traverse(PyObject* self, visitproc visit, void* arg) {
  CompiledFunction* cf = as_cf(self);
  Py_VISIT(cf->fn);
  Py_VISIT(cf->callback);
  Py_VISIT(cf->stance_var);
  Py_VISIT(cf->default_stance);
  Py_VISIT(cf->resolve);
  Py_VISIT(cf->dict);
  return 0;
}

int cf_clear(PyObject* self) {
  CompiledFunction* cf = as_cf(self);
  Py_CLEAR(cf->fn);
  Py_CLEAR(cf->callback);
  Py_CLEAR(cf->stance_var);
  Py_CLEAR(cf->default_stance);
  Py_CLEAR(cf->resolve);
  Py_CLEAR(cf->dict);
  return 0;
}

void cf_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  if (as_cf(self)->weakrefs != nullptr) PyObject_ClearWeakRefs(self);
  cf_clear(self);
  Py_TYPE(self)->tp_free(self);
}

// Binds like a function: C.method is the object itself, instance.method a bound method.
// New reference.
PyObject* cf_descr_get(PyObject* self, PyObject* obj, PyObject*) {
  if (obj == nullptr || obj == Py_None) return Py_NewRef(self);
  return PyMethod_New(self, obj);
}

// New reference.
PyObject* cf_repr(PyObject* self) {
  return PyUnicode_FromFormat("<framecache.compile of %R>", as_cf(self)->fn);
}

PyGetSetDef kGetSet[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, nullptr, nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject kCompiledFunctionType = [] {
  PyTypeObject t{};  // zeroed; PyType_Ready fills in the metatype
  Py_SET_REFCNT(reinterpret_cast<PyObject*>(&t), 1);
  t.tp_name = "framecache._C.CompiledFunction";
  t.tp_basicsize = sizeof(CompiledFunction);
  t.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
               Py_TPFLAGS_METHOD_DESCRIPTOR;
  t.tp_doc =
      "CompiledFunction(fn, callback, stance_var, default_stance, resolve, tag=0, module=False): "
      "calls fn with this thread's callback set to `callback` when stance_var holds "
      "default_stance, else to resolve(callback), and its options tag set to `tag`. With "
      "module=True, fn is a torch.nn.Module whose forward is called directly when its "
      "__call__ would do nothing else.";
  t.tp_new = cf_new;
  t.tp_dealloc = cf_dealloc;
  t.tp_traverse = cf_traverse;
  t.tp_clear = cf_clear;
  t.tp_call = PyVectorcall_Call;
  t.tp_vectorcall_offset = offsetof(CompiledFunction, vectorcall);
  t.tp_descr_get = cf_descr_get;
  t.tp_repr = cf_repr;
  t.tp_dictoffset = offsetof(CompiledFunction, dict);
  t.tp_weaklistoffset = offsetof(CompiledFunction, weakrefs);
  t.tp_getset = kGetSet;
  return t;
}();

}  // namespace

void bind_call_with_callback(py::module_& m) {
  PyObject* fn = PyCFunction_NewEx(&kCallWithCallback, nullptr, m.attr("__name__").ptr());
  if (fn == nullptr) throw py::error_already_set();
  m.add_object("_call_with_callback", py::reinterpret_steal<py::object>(fn));
  if (PyType_Ready(&kCompiledFunctionType) < 0) throw py::error_already_set();
  m.add_object("CompiledFunction",
               py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(&kCompiledFunctionType)));
  m.def(
      "_configure_module_call",
      [](py::handle call, py::handle wrapped, py::handle impl, py::handle globals,
         py::handle tracing_state) {
        if (!module_call::configure(call.ptr(), wrapped.ptr(), impl.ptr(), globals.ptr(),
                                    tracing_state.ptr())) {
          throw py::error_already_set();
        }
      },
      "_configure_module_call(Module.__call__, Module._wrapped_call_impl, Module._call_impl, "
      "torch.nn.modules.module.__dict__, torch._C._get_tracing_state): what a module's "
      "__call__ reads, for calling forward directly when it would do nothing else.");
  m.def(
      "_install_module_call",
      [](py::handle cls) {
        if (!module_call::install_call(cls.ptr())) throw py::error_already_set();
      },
      "_install_module_call(cls): give a Module subclass a __call__ that calls forward "
      "directly when torch's Module.__call__ would do nothing else.");
}

}  // namespace framecache

// Calling a torch.nn.Module whose __call__ would do nothing but call forward.
//
// torch's Module.__call__ (_wrapped_call_impl, then _call_impl) costs ~0.5 us of
// Python when a module has no hooks: it reads _compiled_call_impl, the JIT
// tracing state, forward, four hook dicts of the module and four global ones,
// and then calls forward(*args, **kwargs). A compiled module is called twice
// that way on every hit (the OptimizedModule wrapper, then the module it
// wraps). plain_forward() reads exactly those values from C and, when they say
// __call__ would only call forward, returns forward for the caller to call
// instead; in any other case (a hook, a subclass that overrides any of those
// methods or attributes, tracing, torch not configured) it says no and the
// caller goes through __call__.
//
// The values read are torch's (the torch range in pyproject.toml, 2.11-2.13):
// configure() is given the function objects and the globals dict that
// Module.__call__ uses, and plain_forward() refuses a type whose __call__,
// _wrapped_call_impl or _call_impl is not those very functions. A torch whose
// _call_impl reads more than this must be checked here when its range is
// widened (tests/python/test_module_call.py compares the two paths).
#pragma once

#include <Python.h>

namespace framecache::module_call {

// All borrowed; each is kept. `call`, `wrapped_call_impl`, `call_impl`:
// torch.nn.Module.__call__, ._wrapped_call_impl and ._call_impl (functions);
// `module_globals`: torch.nn.modules.module.__dict__; `tracing_state`:
// torch._C._get_tracing_state. Raises TypeError (returns false) on wrong types.
bool configure(PyObject* call, PyObject* wrapped_call_impl, PyObject* call_impl,
               PyObject* module_globals, PyObject* tracing_state);

// 1 with *forward set (new reference: what `module.forward` gives) when calling
// `module` (borrowed) would only call forward; 0 when it would do more, or
// might (then nothing is set); -1 with an error set.
int plain_forward(PyObject* module, PyObject** forward);

// Calls `module` (borrowed) with the arguments as a vectorcall gives them: its
// forward when plain_forward says so, else the module itself. New reference,
// or null with an error set.
PyObject* call(PyObject* module, PyObject* const* args, size_t nargsf, PyObject* kwnames);

// Gives the torch.nn.Module subclass `cls` (borrowed) a __call__ that calls forward
// directly when plain_forward's conditions hold for the instance (its own
// __call__ aside), and torch's Module.__call__ otherwise. For framecache's
// OptimizedModule, which would otherwise pay Module.__call__ on every call.
// Raises (returns false) on error.
bool install_call(PyObject* cls);

}  // namespace framecache::module_call

// Python attribute hooks that a guard can run without the interpreter.
//
// Hugging Face configs route every attribute read through a Python
// __getattribute__ that renames a few keys through a class-level map:
//
//   def __getattribute__(self, key):
//       if key != "attribute_map" and key in super().__getattribute__("attribute_map"):
//           key = super().__getattribute__("attribute_map")[key]
//       return super().__getattribute__(key)
//
// and expose some settings as properties that return another attribute
// (`def _attn_implementation(self): return self._attn_implementation_internal`).
// A guard on `config.use_cache` then costs a Python call (1.4 µs; a
// property, or a hasattr that ends in AttributeError, 2.5-3 µs), and a
// transformers model's guards read a dozen such attributes per call.
//
// Since transformers 5.x that hook is one link of a chain: its super() reaches
// HeterogeneousConfigMixin.__getattribute__, which passes every read through
// to object.__getattribute__ unless the instance __dict__ holds a
// `_heterogeneity_spec`.
//
// This unit performs such chains in C, with the same C-API operations the
// bytecode performs, in the same order. Which code objects qualify is decided
// in Python (framecache/_attr_hooks.py, set with set_recogniser(): bytecode is
// compared instruction by instruction there, with `dis`), once per code
// object; a verdict names one of these shapes and its parameter:
//   * "redirect" (the map's attribute name): the hook above.
//     `super().__getattribute__(x)` is the next link of the chain (in the end
//     PyObject_GenericGetAttr); `k in m` is PySequence_Contains; `m[k]` is
//     PyObject_GetItem. Anything those run (a descriptor, a __contains__)
//     runs as it would have.
//   * "pass_through" (the __dict__ key): `spec = super().__getattribute__(
//     "__dict__").get(key)`, then `return super().__getattribute__(name)` when
//     spec is None; when it is not, the hook's other branch would run, and the
//     read steps aside (nothing but that pure lookup has run by then).
//   * "alias" (the attribute): a property getter `return self.<attribute>`,
//     reached when the generic lookup finds an exact property whose fget is
//     one: its result is getattr(self, <attribute>), modelled again.
// So a modelled read is the read, not an approximation: the recognition is
// what has to be right. Everything the bytecode resolves at run time is
// checked at each read, before anything runs: each link's function (found on
// the MRO: the type's version tag covers it), its __code__ (assignable), its
// __class__ cell (assignable), and the name `super` (not shadowed by the
// function's globals, the builtin in its builtins). A type with a __getattr__
// is not modelled (the interpreter's fallback on AttributeError is not
// reproduced here).
//
// Recognised code objects are held strongly (at most kMaxCodes), so that a
// pointer comparison against them can never match a different code object
// allocated at a freed one's address.
#pragma once

#include <Python.h>

#include "framecache/ref.h"

namespace framecache::guards::attr_hook {

// True if type `t` (borrowed) reads attributes through a recognised
// __getattribute__ and has no __getattr__: getattr() on its instances can be
// done by read(). Cached per type and version tag. Runs no Python.
bool modelled(PyTypeObject* t);

// What a modelled read gave.
struct Result {
  enum class Kind {
    kNotModelled,  // nothing ran: the caller takes the interpreter's path
    kFound,        // `value` holds the attribute
    kAbsent,       // AttributeError (only with `suppress`; no exception set)
    kError,        // an exception is set
  };
  Kind kind = Kind::kNotModelled;
  Ref value;
};

// getattr(obj, name) for an `obj` (borrowed) whose type is modelled();
// `name` (borrowed) an exact str. With `suppress`, an AttributeError from the
// read becomes kAbsent (like _PyObject_LookupAttr). kNotModelled when a check
// made before anything ran fails (another type, a reassigned __code__, a
// shadowed `super`, ...).
Result read(PyObject* obj, PyObject* name, bool suppress);

// Sets the Python callable that classifies a code object (borrowed; held
// for the life of the process): recogniser(code) returns None or a tuple
// (shape, parameter) of two strs, shape one of "redirect", "pass_through",
// "alias". Verdicts already made are forgotten. Without one, nothing is
// modelled.
void set_recogniser(PyObject* recogniser);

// typeobject.c's slot_tp_getattr_hook: the tp_getattro CPython gives a class
// that defines __getattr__ or __getattribute__ (static there, so read off a
// probe class once); null if probing failed.
getattrofunc slot_getattr_hook();

// For tests: the verdict on `code` (borrowed): "", "redirect", "pass_through"
// or "alias".
const char* verdict_of(PyObject* code);

}  // namespace framecache::guards::attr_hook

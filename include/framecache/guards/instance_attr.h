// A per-accessor cache that reads an attribute straight from an instance's
// own storage when that provably gives what the full lookup would.
//
// `x.name` costs ~30 ns through PyObject_GetAttr (the type's MRO lookup, the
// data-descriptor test, then the instance dict); a model's guard tree does
// hundreds of them. Like CPython's LOAD_ATTR_INSTANCE_VALUE specialisation,
// the cache remembers, for one type and one version tag of it, that:
//  * the lookup is object.__getattribute__'s (PyObject_GenericGetAttr): the
//    type's tp_getattro is the generic one, a module's (which tries the generic
//    lookup first), or the hook of a class that defines only __getattr__
//    (slot_tp_getattr_hook tries the generic lookup first, and __getattr__
//    only when it raises AttributeError); for GenericGetAttr (object.
//    __getattribute__ itself) any tp_getattro qualifies;
//  * no data descriptor on the type's MRO shadows the instance value: the MRO
//    has no attribute `name`, or one whose type has no __set__ and is
//    immutable (a builtin type: it cannot gain a __set__ later behind the
//    owner type's back, as a Python descriptor class could);
//  * where the instance keeps its attributes: the values array of a
//    managed-dict class (and `name`'s index in the type's shared keys), or a
//    dict pointer (tp_dictoffset: modules, SimpleNamespace, ...).
// A getattr() on a type whose Python __getattribute__ is one that
// attr_hook_model.h recognises (Hugging Face configs) is performed by that
// model instead of by a call into the interpreter.
// Everything above depends only on the type's MRO dicts and slots, which a
// change (class attribute assigned or deleted, a base modified, __bases__
// assigned) invalidates by resetting the type's version tag; the cache
// compares Py_TYPE(x) and its tp_version_tag on every read. Version tags are
// never reused, so a type freed and another allocated at the same address
// cannot match.
//
// A read that finds the value in the instance's storage returns it; anything
// else (another type, a changed version, the value absent from the instance:
// deleted, class-level, provided by __getattr__ or a non-data descriptor) is
// answered by the caller's generic path, so only the common found-in-instance
// case is specialised and every other case keeps exactly getattr's behaviour.
//
// Thread safety: the fields change only with the GIL held and without running
// Python in between, so a concurrent check sees them either before or after.
#pragma once

#include <Python.h>

#include <cstdint>

#include "framecache/ref.h"

namespace framecache::guards {

class InstanceAttrCache {
 public:
  enum class Lookup {
    kGetAttr,  // getattr(x, name): type(x).__getattribute__, then __getattr__
    kGeneric,  // object.__getattribute__(x, name)
  };
  // name: borrowed, an interned exact str; held strongly. One cache reads one
  // name (what it caches, the index in the shared keys, is that name's).
  InstanceAttrCache(Lookup lookup, PyObject* name) : lookup_(lookup), name_(Ref::borrow(name)) {}

  // The result of a read: `value` is borrowed (valid until Python runs) when
  // `found`; `error` when a dict lookup raised (the exception is set, and is
  // what the generic lookup would have raised). Neither: use the generic path.
  struct Read {
    PyObject* value = nullptr;
    bool found = false;
    bool error = false;
    Ref owned;  // holds `value` when the read made it (a modelled hook's result)
  };

  // obj.name, `obj` borrowed.
  Read read(PyObject* obj) {
    PyTypeObject* t = Py_TYPE(obj);
    if (t != type_ || t->tp_version_tag != version_ || t->tp_getattro != getattro_) {
      if (!specialise(t)) return Read{};
    }
    switch (storage_) {
      case Storage::kManaged:
        return read_managed(obj);
      case Storage::kDictPtr:
        return read_dict_ptr(obj);
      case Storage::kHooked:
        break;
    }
    return read_hooked(obj);
  }

  // For tests and introspection: true once a type is cached.
  bool specialised() const { return type_ != nullptr; }

 private:
  enum class Storage { kManaged, kDictPtr, kHooked };
  // Caches `t` if the fast path applies to it; false (and nothing cached) if
  // not. Runs no Python.
  bool specialise(PyTypeObject* t);
  Read read_managed(PyObject* obj);
  Read read_dict_ptr(PyObject* obj);
  // Through attr_hook::read (may run what the hook would have run).
  Read read_hooked(PyObject* obj);

  Lookup lookup_;
  Ref name_;
  PyTypeObject* type_ = nullptr;  // borrowed; compared, never dereferenced stale
  unsigned int version_ = 0;
  getattrofunc getattro_ = nullptr;
  Storage storage_ = Storage::kManaged;
  Py_ssize_t index_ = -1;  // in the shared keys; -1: not there when cached
  // Respecialisations left: a site that sees ever new types stops trying and
  // stays on the generic path.
  uint8_t budget_ = 16;
};

}  // namespace framecache::guards

// Remembers which object a guard expects without keeping it alive when it can
// be weakly referenced: a guard tree that held its referents strongly would
// keep functions (and so their code objects, whose co_extra owns this tree)
// alive in a cycle the garbage collector cannot see.
#pragma once

#include <Python.h>

#include "framecache/ref.h"

namespace framecache::guards {

class ObjectIdentity {
 public:
  // obj: borrowed. Takes a weak reference if possible, else a strong one.
  explicit ObjectIdentity(PyObject* obj);
  // True if `value` (borrowed) is the remembered object and it is alive.
  bool is(PyObject* value) const noexcept {
    return value == ptr_ && (!weak_ || PyWeakref_GET_OBJECT(weak_.get()) == ptr_);
  }
  // The remembered object if alive (borrowed), else null.
  PyObject* get() const noexcept {
    if (weak_) {
      PyObject* o = PyWeakref_GET_OBJECT(weak_.get());
      return o == Py_None && ptr_ != Py_None ? nullptr : o;
    }
    return strong_.get();
  }
  // The raw address the guard compares with (never dereferenced once dead).
  PyObject* address() const noexcept { return ptr_; }

 private:
  PyObject* ptr_;
  Ref weak_;
  Ref strong_;
};

}  // namespace framecache::guards

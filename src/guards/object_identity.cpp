// ObjectIdentity: weak where possible, strong otherwise.
#include "framecache/guards/object_identity.h"

namespace framecache::guards {

ObjectIdentity::ObjectIdentity(PyObject* obj) : ptr_(obj) {
  if (PyType_SUPPORTS_WEAKREFS(Py_TYPE(obj))) {
    weak_ = Ref::steal(PyWeakref_NewRef(obj, nullptr));
    if (weak_) return;
    PyErr_Clear();
  }
  strong_ = Ref::borrow(obj);
}

}  // namespace framecache::guards

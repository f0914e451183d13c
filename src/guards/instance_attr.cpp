// InstanceAttrCache: when an attribute may be read from the instance's storage.
#include "framecache/guards/instance_attr.h"

#include "framecache/cpython.h"
#include "framecache/guards/attr_hook_model.h"

namespace framecache::guards {

namespace {

// True if type `t`'s __getattribute__ is object.__getattribute__ itself (what
// slot_tp_getattr_hook tests before calling PyObject_GenericGetAttr).
bool generic_getattribute(PyTypeObject* t) {
  static PyObject* dunder = nullptr;  // interned, immortal for the process (see above)
  if (dunder == nullptr) {
    dunder = PyUnicode_InternFromString("__getattribute__");
    if (dunder == nullptr) {
      PyErr_Clear();
      return false;
    }
  }
  PyObject* ga = _PyType_Lookup(t, dunder);  // borrowed
  return ga != nullptr && Py_IS_TYPE(ga, &PyWrapperDescr_Type) &&
         reinterpret_cast<PyWrapperDescrObject*>(ga)->d_wrapped ==
             reinterpret_cast<void*>(PyObject_GenericGetAttr);
}

}  // namespace

bool InstanceAttrCache::specialise(PyTypeObject* t) {
  PyObject* name = name_.get();
  type_ = nullptr;
  if (budget_ == 0) return false;
  --budget_;
  if (lookup_ == Lookup::kGetAttr) {
    const getattrofunc ga = t->tp_getattro;
    const bool generic_first =
        ga == PyObject_GenericGetAttr || ga == PyModule_Type.tp_getattro ||
        (ga != nullptr && ga == attr_hook::slot_getattr_hook() && generic_getattribute(t));
    if (!generic_first) {
      if (!attr_hook::modelled(t)) return false;
      storage_ = Storage::kHooked;
      index_ = -1;
      type_ = t;
      version_ = t->tp_version_tag;
      getattro_ = t->tp_getattro;
      return true;
    }
  }
  // _PyType_Lookup also gives the type a valid version tag (it caches by it).
  PyObject* descr = _PyType_Lookup(t, name);  // borrowed; runs no Python
  if (descr != nullptr) {
    PyTypeObject* dt = Py_TYPE(descr);
    if (dt->tp_descr_set != nullptr || !PyType_HasFeature(dt, Py_TPFLAGS_IMMUTABLETYPE)) {
      return false;
    }
  }
  if (!cpy::valid_version_tag(t)) return false;
  if (PyType_HasFeature(t, Py_TPFLAGS_MANAGED_DICT)) {
    if (!cpy::kManagedDictReadable) return false;
    storage_ = Storage::kManaged;
    index_ = cpy::shared_keys_index(t, name);
  } else if (t->tp_dictoffset != 0) {
    storage_ = Storage::kDictPtr;
    index_ = -1;
  } else {
    return false;
  }
  type_ = t;
  version_ = t->tp_version_tag;
  getattro_ = t->tp_getattro;
  return true;
}

namespace {
// Looks `name` up in an instance dict (borrowed, may be null), as
// _PyObject_GenericGetAttrWithDict does.
InstanceAttrCache::Read read_instance_dict(PyObject* dict, PyObject* name) {
  InstanceAttrCache::Read r;
  if (dict == nullptr || !PyDict_Check(dict)) return r;
  r.value = PyDict_GetItemWithError(dict, name);  // borrowed
  r.found = r.value != nullptr;
  r.error = !r.found && PyErr_Occurred() != nullptr;
  return r;
}
}  // namespace

InstanceAttrCache::Read InstanceAttrCache::read_managed(PyObject* obj) {
  PyObject** values = cpy::instance_values(obj);
  if (values == nullptr) return read_instance_dict(cpy::managed_dict(obj), name_.get());
  Read r;
  if (index_ >= 0) {
    r.value = values[index_];
    r.found = r.value != nullptr;
  }
  return r;
}

InstanceAttrCache::Read InstanceAttrCache::read_hooked(PyObject* obj) {
  attr_hook::Result res = attr_hook::read(obj, name_.get(), /*suppress=*/false);
  Read r;
  switch (res.kind) {
    case attr_hook::Result::Kind::kFound:
      r.value = res.value.get();
      r.found = true;
      r.owned = std::move(res.value);
      break;
    case attr_hook::Result::Kind::kError:
      r.error = true;
      break;
    case attr_hook::Result::Kind::kAbsent:  // not without suppress; the generic path decides
    case attr_hook::Result::Kind::kNotModelled:
      break;
  }
  return r;
}

InstanceAttrCache::Read InstanceAttrCache::read_dict_ptr(PyObject* obj) {
  PyObject** dictptr = _PyObject_GetDictPtr(obj);  // no managed dict here: reads, never builds
  return read_instance_dict(dictptr != nullptr ? *dictptr : nullptr, name_.get());
}

}  // namespace framecache::guards

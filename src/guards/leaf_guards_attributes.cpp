// NO_HASATTR.
#include "framecache/guards/leaf_guards_attributes.h"

#include <stdexcept>

#include "framecache/cpython.h"
#include "framecache/guards/attr_hook_model.h"
#include "framecache/guards/check_error_text.h"

namespace framecache::guards {

namespace {
// 1 found (the attribute is dropped), 0 absent, -1 with an exception set.
// cpy::lookup_attr (_PyObject_LookupAttr; PyObject_GetOptionalAttr on 3.13)
// reports a missing attribute without creating an AttributeError for types
// using the generic getattr.
int lookup(PyObject* value, PyObject* name) {
  if (Py_TYPE(value)->tp_getattro != PyObject_GenericGetAttr) {
    // A recognised Python __getattribute__ (attr_hook_model.h) is performed in
    // C: a hasattr() that ends in AttributeError costs no exception.
    const attr_hook::Result r = attr_hook::read(value, name, /*suppress=*/true);
    switch (r.kind) {
      case attr_hook::Result::Kind::kFound:
        return 1;
      case attr_hook::Result::Kind::kAbsent:
        return 0;
      case attr_hook::Result::Kind::kError:
        return -1;
      case attr_hook::Result::Kind::kNotModelled:
        break;
    }
  }
  PyObject* attr = nullptr;
  const int found = cpy::lookup_attr(value, name, &attr);
  Py_XDECREF(attr);
  return found;
}
}  // namespace

NoHasattr::NoHasattr(PyObject* name) {
  // An exact str (a subclass could not be interned), interned so that the
  // lookup's dict probes hit on identity.
  PyObject* exact = PyUnicode_FromObject(name);
  if (exact == nullptr) {
    PyErr_Clear();
    throw std::invalid_argument("the attribute name must be a str");
  }
  PyUnicode_InternInPlace(&exact);
  name_ = Ref::steal(exact);
  const char* s = PyUnicode_AsUTF8(exact);
  if (s == nullptr) {
    PyErr_Clear();
    throw std::invalid_argument("the attribute name cannot be encoded as UTF-8");
  }
  name_str_ = s;
}

bool NoHasattr::check(PyObject* value) {
  const int found = lookup(value, name_.get());
  if (found < 0) {
    consume_check_error();
    return false;
  }
  return found == 0;
}

std::string NoHasattr::explain(PyObject* value) {
  const int found = lookup(value, name_.get());
  if (found < 0) {
    return "expected no attribute '" + name_str_ + "', but looking it up on " + a_type_name(value) +
           " raised " + take_check_error_text();
  }
  if (found == 0) return "expected no attribute '" + name_str_ + "', which was found when checked";
  return "expected no attribute '" + name_str_ + "', but " + a_type_name(value) + " has one";
}

std::string NoHasattr::describe() const { return "NO_HASATTR('" + name_str_ + "')"; }

}  // namespace framecache::guards

// take_check_error_text: an exception's type and message, for verbose reasons.
#include "framecache/guards/check_error_text.h"

#include <Python.h>

#include "framecache/guards/guard_manager.h"

namespace framecache::guards {

std::string take_check_error_text() {
  if (!PyErr_Occurred()) return "";
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  std::string text = exception_text(value);
  PyErr_Restore(type, value, tb);
  consume_check_error();
  return text;
}

}  // namespace framecache::guards

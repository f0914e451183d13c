// FrameView: the callback's read-only window on an interpreter frame.
#include "framecache/cpython.h"
//
#include "framecache/callback_types.h"
#include "framecache/frame_locals.h"

namespace framecache {

cpy::Frame* FrameView::require() const {
  if (frame_ == nullptr) {
    // RuntimeError, as callback_types.h documents: the view outlived its frame.
    PyErr_SetString(PyExc_RuntimeError,
                    "this frame view is no longer valid: frames may only be read while the "
                    "callback runs");
    throw py::error_already_set();
  }
  return frame_;
}

py::object FrameView::f_code() const {
  return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(cpy::frame_code(require())));
}

py::object FrameView::f_locals() {
  cpy::Frame* f = require();
  if (!locals_) {
    Ref d = frame_locals_dict(f);
    if (!d) throw py::error_already_set();
    locals_ = py::reinterpret_steal<py::object>(d.release());
  }
  return locals_;
}

py::object FrameView::f_globals() const {
  return py::reinterpret_borrow<py::object>(cpy::frame_globals(require()));
}

py::object FrameView::f_builtins() const {
  return py::reinterpret_borrow<py::object>(cpy::frame_builtins(require()));
}

py::object FrameView::closure() const {
  PyObject* c = cpy::frame_closure(require());
  return c ? py::reinterpret_borrow<py::object>(c) : py::none();
}

int FrameView::f_lasti() const { return cpy::frame_lasti(require()); }

}  // namespace framecache

// _C._CaptureProfile: the side-effect monitor's profile function, filtered in C
// (include/framecache/capture_profile.h says why).
#include <memory>

#include "framecache/bindings.h"
#include "framecache/capture_profile.h"
#include "framecache/eval_frame.h"

namespace framecache {

void bind_capture_profile(py::module_& m) {
  py::class_<CaptureProfile>(
      m, "_CaptureProfile",
      "The capture's profile function: events of library code the monitor would ignore are "
      "answered in C, the rest call `callback(frame, event, arg)` as sys.setprofile does.")
      .def(py::init([](py::object callback, py::dict user_code) {
             if (!PyCallable_Check(callback.ptr())) {
               throw py::type_error("_CaptureProfile: callback must be callable");
             }
             auto state = std::make_unique<CaptureProfile>();
             state->callback = Ref::borrow(callback.ptr());
             state->user_code = Ref::borrow(user_code.ptr());
             return state;
           }),
           py::arg("callback"), py::arg("user_code"))
      .def_property(
          "tracing", [](const CaptureProfile& self) { return self.tracing; },
          [](CaptureProfile& self, bool on) { self.tracing = on; },
          "Whether the monitor's line tracer is on (it sets this when it switches).")
      .def_property(
          "per_frame", [](const CaptureProfile& self) { return self.per_frame; },
          [](CaptureProfile& self, bool on) { self.per_frame = on; },
          "Whether known library frames run without events (3.11, the hook installed; see "
          "_capture_per_frame_available). The monitor then keeps its line tracer on.")
      .def(
          "install",
          [](py::object self) {
            if (!capture_profile_install(self.cast<CaptureProfile*>(), self.ptr())) {
              throw py::error_already_set();
            }
          },
          "Make this this thread's profile function (sys.setprofile restores another).");
  m.def(
      "_capture_per_frame_available",
      [] { return cpy::kPerFrameTracingFlag && hook_installed(); },
      "Whether a capture's filter can give each frame its own events: on 3.11, while "
      "framecache's evaluator is installed (it hands the filter every frame).");
}

}  // namespace framecache

// Builder method for the weakref accessor: weakref_call.
#include "framecache/bindings.h"
#include "framecache/builder_args.h"
#include "framecache/guards/accessors_weakref.h"

namespace framecache {

using guards::GuardManager;

void bind_accessors_weakref(GuardManagerClass& cls) {
  cls.def("weakref_call",
          [](GuardManager& g) -> GuardManager& {
            require_value_node("weakref_call()", g);
            return guards::add_weakref_call(g);
          },
          py::return_value_policy::reference_internal,
          "The node for w() (L['w']()): the referent of a weakref.ref, None once it died.");
}

}  // namespace framecache

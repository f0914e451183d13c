// Bindings for the runtime: strategies, callback types, per-code caches.
#include <pybind11/stl.h>

#include "framecache/bindings.h"
#include "framecache/callback_types.h"
#include "framecache/eval_frame.h"
#include "framecache/extra_state.h"
#include "framecache/guards/root_guard_manager.h"
#include "framecache/runtime_config.h"
#include "framecache/thread_state.h"

namespace framecache {

namespace {

PyCodeObject* as_code(const py::handle& obj, const char* what) {
  if (!PyCode_Check(obj.ptr())) {
    throw py::type_error(std::string(what) + " expects a code object, got " +
                         Py_TYPE(obj.ptr())->tp_name +
                         " (pass fn.__code__ for a function)");
  }
  return reinterpret_cast<PyCodeObject*>(obj.ptr());
}

py::object steal_or_throw(Ref r) {
  if (!r) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(r.release());
}

std::string strategy_repr(const FrameExecStrategy& s) {
  return std::string("FrameExecStrategy(cur_action=FrameAction.") + frame_action_name(s.cur_action) +
         ", recursive_action=FrameAction." + frame_action_name(s.recursive_action) + ")";
}

}  // namespace

void bind_runtime(py::module_& m) {
  if (extra_state_init() < 0) throw py::error_already_set();

  py::enum_<FrameAction>(m, "FrameAction", "What the hook does with a frame.")
      .value("DEFAULT", FrameAction::DEFAULT, "Look up; on a miss call the callback.")
      .value("RUN_ONLY", FrameAction::RUN_ONLY, "Look up; on a miss run the frame normally.")
      .value("SKIP", FrameAction::SKIP, "Run the frame normally, with no lookup.");

  py::class_<FrameExecStrategy>(m, "FrameExecStrategy",
                                "What the hook does with a frame (cur_action) and with the "
                                "frames it calls (recursive_action).")
      .def(py::init([](FrameAction cur, FrameAction rec) { return FrameExecStrategy{cur, rec}; }),
           py::arg("cur_action") = FrameAction::DEFAULT,
           py::arg("recursive_action") = FrameAction::DEFAULT)
      .def_readwrite("cur_action", &FrameExecStrategy::cur_action)
      .def_readwrite("recursive_action", &FrameExecStrategy::recursive_action)
      .def("__eq__", [](const FrameExecStrategy& a, const py::object& b) {
        return py::isinstance<FrameExecStrategy>(b) && a == b.cast<const FrameExecStrategy&>();
      })
      .def("__hash__", [](const FrameExecStrategy& s) {
        return static_cast<int>(s.cur_action) * 3 + static_cast<int>(s.recursive_action);
      })
      .def("__repr__", &strategy_repr);

  py::class_<GuardedCode>(m, "GuardedCode",
                          "A compiled code object and the guards under which it may run.")
      .def(py::init([](py::object code, py::object guard_manager, py::object compile_id,
                       std::string trace_annotation, std::vector<std::string> identity_locals,
                       std::vector<std::string> export_locals) {
             if (!PyCode_Check(code.ptr())) {
               throw py::type_error(std::string("GuardedCode: code must be a code object, got ") +
                                    Py_TYPE(code.ptr())->tp_name);
             }
             if (!py::isinstance<guards::RootGuardManager>(guard_manager)) {
               py::object check = py::getattr(guard_manager, "check", py::none());
               if (check.is_none() || !PyCallable_Check(check.ptr())) {
                 throw py::type_error(
                     std::string("GuardedCode: guard_manager must be a RootGuardManager or have "
                                 "a callable check(f_locals), got ") +
                     Py_TYPE(guard_manager.ptr())->tp_name);
               }
             }
             return GuardedCode{std::move(code), std::move(guard_manager), std::move(compile_id),
                                std::move(trace_annotation), std::move(identity_locals),
                                std::move(export_locals)};
           }),
           py::arg("code"), py::arg("guard_manager"), py::arg("compile_id") = py::none(),
           py::arg("trace_annotation") = "", py::arg("identity_locals") = std::vector<std::string>{},
           py::arg("export_locals") = std::vector<std::string>{})
      .def_readonly("code", &GuardedCode::code)
      .def_readonly("guard_manager", &GuardedCode::guard_manager)
      .def_readonly("compile_id", &GuardedCode::compile_id)
      .def_readonly("trace_annotation", &GuardedCode::trace_annotation)
      .def_readonly("identity_locals", &GuardedCode::identity_locals)
      .def_readonly("export_locals", &GuardedCode::export_locals);

  py::class_<CallbackResult>(m, "CallbackResult", "What a cache-miss callback returns.")
      .def(py::init([](py::object guarded_code, std::optional<FrameExecStrategy> strategy,
                       bool apply_to_code) {
             if (!guarded_code.is_none() && !py::isinstance<GuardedCode>(guarded_code)) {
               throw py::type_error(
                   std::string("CallbackResult: guarded_code must be a GuardedCode or None, got ") +
                   Py_TYPE(guarded_code.ptr())->tp_name);
             }
             if (apply_to_code && !strategy) {
               throw py::value_error("CallbackResult: apply_to_code=True needs a strategy");
             }
             return CallbackResult{std::move(guarded_code), strategy, apply_to_code};
           }),
           py::arg("guarded_code") = py::none(), py::arg("strategy") = py::none(),
           py::arg("apply_to_code") = false)
      .def_readonly("guarded_code", &CallbackResult::guarded_code)
      .def_readonly("strategy", &CallbackResult::strategy)
      .def_readonly("apply_to_code", &CallbackResult::apply_to_code);

  py::class_<FrameView>(m, "FrameView",
                        "A read-only view of the frame being looked up; valid only while the "
                        "callback runs.")
      .def_property_readonly("f_code", &FrameView::f_code)
      .def_property_readonly("f_locals", &FrameView::f_locals)
      .def_property_readonly("f_globals", &FrameView::f_globals)
      .def_property_readonly("f_builtins", &FrameView::f_builtins)
      .def_property_readonly("closure", &FrameView::closure)
      .def_property_readonly("f_lasti", &FrameView::f_lasti)
      .def_property_readonly("valid", &FrameView::valid)
      .def("__repr__", [](const FrameView& v) {
        if (!v.valid()) return std::string("<FrameView (expired)>");
        return "<FrameView of " + py::repr(v.f_code()).cast<std::string>() + ">";
      });

  py::class_<CacheEntryView>(m, "CacheEntry", "A compiled code cached on a code object.")
      .def_property_readonly("code", [](const CacheEntryView& v) {
        return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(v.entry->code()));
      })
      .def_property_readonly("guard_manager", [](const CacheEntryView& v) {
        return py::reinterpret_borrow<py::object>(v.entry->guard_manager());
      })
      .def_property_readonly("compile_id", [](const CacheEntryView& v) {
        return py::reinterpret_borrow<py::object>(v.entry->compile_id());
      })
      .def_property_readonly("trace_annotation",
                             [](const CacheEntryView& v) { return v.entry->trace_annotation(); })
      .def_property_readonly("hit_count", [](const CacheEntryView& v) { return v.entry->hits(); })
      .def("__repr__", [](const CacheEntryView& v) {
        return "<CacheEntry " + py::repr(py::handle(reinterpret_cast<PyObject*>(v.entry->code())))
                                    .cast<std::string>() +
               " hits=" + std::to_string(v.entry->hits()) + ">";
      });

  m.def("set_eval_frame",
        [](py::object callback, std::optional<uint64_t> tag) {
          // A callable may carry its options tag (framecache.compile's
          // CompileContext does), so that restoring a saved callback restores
          // the entries it sees.
          uint64_t t = tag.value_or(0);
          if (!tag && PyCallable_Check(callback.ptr())) {
            py::object attr = py::getattr(callback, "_framecache_tag", py::none());
            if (PyLong_Check(attr.ptr())) t = attr.cast<uint64_t>();
          }
          return steal_or_throw(set_eval_frame_callback(callback.ptr(), t));
        },
        py::arg("callback"), py::arg("tag") = py::none(),
        "Set this thread's callback (None: off, False: run-only, callable: compile mode); "
        "returns the previous one. Entries compiled from now on carry the options tag `tag` "
        "(default: the callback's `_framecache_tag` attribute, else 0) and lookup uses only "
        "entries of that tag.");
  m.def("get_eval_frame_tag", &get_eval_frame_tag, "This thread's options tag.");
  m.def("get_eval_frame", [] { return steal_or_throw(get_eval_frame_callback()); },
        "This thread's callback.");
  m.def("hook_installed", &hook_installed,
        "True while framecache's evaluator is installed in the interpreter.");
  m.def("reset_code", [](py::object code) { extra_state_reset(as_code(code, "reset_code")); },
        py::arg("code"), "Drop every cache entry, the frame_state and the strategy of a code object.");
  m.def("reset", &extra_state_reset_all, "reset_code() for every code object framecache has seen.");
  m.def("cache_entries",
        [](py::object code) {
          py::list out;
          if (ExtraState* es = extra_state_lookup(as_code(code, "cache_entries"))) {
            for (const auto& e : es->entries()) out.append(py::cast(CacheEntryView{e}));
          }
          return out;
        },
        py::arg("code"), "The cache entries of a code object, most recently used first.");
  m.def("frame_state",
        [](py::object code) {
          ExtraState* es = extra_state_ensure(as_code(code, "frame_state"));
          if (es == nullptr) throw py::error_already_set();
          return py::reinterpret_borrow<py::dict>(es->frame_state());
        },
        py::arg("code"), "The frame_state dict of a code object (kept across recompiles).");
  m.def("set_code_strategy",
        [](py::object code, const FrameExecStrategy& strategy) {
          ExtraState* es = extra_state_ensure(as_code(code, "set_code_strategy"));
          if (es == nullptr) throw py::error_already_set();
          es->strategy = strategy;
        },
        py::arg("code"), py::arg("strategy"), "Set the FrameExecStrategy of a code object.");
  m.def("get_code_strategy",
        [](py::object code) {
          ExtraState* es = extra_state_lookup(as_code(code, "get_code_strategy"));
          return es ? es->strategy : FrameExecStrategy{};
        },
        py::arg("code"), "The FrameExecStrategy of a code object.");
  m.def("set_lru", [](bool on) { runtime_config().lru = on; }, py::arg("enabled"),
        "Move a hit entry to the front of its list (True, the default) or keep insertion order.");
  m.def("get_lru", [] { return runtime_config().lru; });
  m.def("set_recompile_limit",
        [](int64_t limit, std::optional<int64_t> accumulated) {
          if (limit < 0) throw py::value_error("recompile limit must be >= 0, got " + std::to_string(limit));
          if (accumulated && *accumulated < 0) {
            throw py::value_error("accumulated recompile limit must be >= 0, got " +
                                  std::to_string(*accumulated));
          }
          runtime_config().recompile_limit = limit;
          if (accumulated) runtime_config().accumulated_recompile_limit = *accumulated;
        },
        py::arg("limit"), py::arg("accumulated") = py::none(),
        "Recompile limits. `limit`: entries a frame may find compiled for the same "
        "identity-guarded objects (GuardedCode.identity_locals) before a miss runs without "
        "compiling; `accumulated`: entries one code object may accumulate in all before it "
        "runs RUN_ONLY.");
  m.def("get_recompile_limits", [] {
    const auto& c = runtime_config();
    return py::make_tuple(c.recompile_limit, c.accumulated_recompile_limit, c.accumulated_compiles);
  });
  m.def("_set_recompile_warning_category", [](py::object category) {
    if (!PyType_Check(category.ptr()) ||
        !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(category.ptr()),
                          reinterpret_cast<PyTypeObject*>(PyExc_Warning))) {
      throw py::type_error("the recompile warning category must be a Warning subclass");
    }
    set_recompile_warning_category(category.release().ptr());  // kept for the process
  });
  m.def("_set_skip_prefixes", &extra_state_set_skip_prefixes, py::arg("prefixes"),
        "Code whose filename starts with one of these is never intercepted.");
  m.def("_code_count", &extra_state_count, "Number of code objects with an ExtraState.");
  // A gc.callbacks entry in C++: no Python frame, so trace and profile
  // functions never see it, and each collection pays no Python call.
  m.def("_note_interpreter_exit", &note_interpreter_exit,
        "Called by an atexit handler: marks this thread as the one finalizing the interpreter, "
        "so that daemon threads ended by the exit never release Python references (CPython "
        "gh-87135).");
  m.def("_gc_callback",
        [](py::handle phase, py::handle info) {
          if (!PyUnicode_Check(phase.ptr()) || !PyDict_Check(info.ptr()) ||
              PyUnicode_CompareWithASCIIString(phase.ptr(), "start") != 0) {
            return;
          }
          PyObject* generation = PyDict_GetItemString(info.ptr(), "generation");  // borrowed
          if (generation != nullptr && PyLong_Check(generation) && PyLong_AsLong(generation) == 2) {
            cache_entry_drop_cached_functions();
          }
        },
        py::arg("phase"), py::arg("info"),
        "gc callback: before a full collection, drop the function objects cache entries keep "
        "for their hits, so that the collector can free the globals they hold.");
  m.def("_run_with_action",
        [](FrameAction action, py::object fn, py::args args, py::kwargs kwargs) {
          ThreadState* st = thread_state_get();
          if (st == nullptr) throw py::error_already_set();
          CapScope cap(st, action);
          return fn(*args, **kwargs);
        },
        py::arg("action"), py::arg("fn"),
        "Call fn(*args, **kwargs) with frames treated at least as `action` (SKIP: never "
        "intercepted, RUN_ONLY: cached code only).");
}

}  // namespace framecache

// The PEP 523 evaluator: lookup, hit, miss and the callback protocol.
//
// The life of a frame through the hook:
//  1. The caller pushed and initialised the frame; nothing ran yet. If this
//     thread is off, suspended (guards or the callback are running), the frame
//     is a resumed generator, a trace, profile or sys.monitoring tool is
//     active, or an exception is being thrown in, the frame goes straight to
//     the chained evaluator.
//  2. Otherwise its code gets an ExtraState. The strategy in force is the
//     stronger of the code's own cur_action and the thread's cap (the
//     recursive_action of the frames that called this one).
//  3. Lookup runs each entry's guards (the thread suspended, so guards that
//     call Python run normally) and stops at the first that passes.
//  4. A hit runs the entry's code in place of the frame: CacheEntry::run calls
//     a function made of the compiled code with the frame's arguments and
//     marks that code as `bypass`, so its frame runs normally when it comes
//     back through this hook. The original frame is never run.
//  5. A miss in compile mode calls the callback; its CallbackResult may add
//     an entry (run now) and set the code's strategy.
//  6. A frame that was not handed to an evaluator (a hit, or an error before
//     anything ran) is finished by UnrunFrame: on 3.12+ the hook must clear
//     and pop it itself (cpy::finish_unrun_frame says why); on 3.11 its
//     pusher does.
// Every path that holds an ExtraState or CacheEntry across a call into
// Python holds a Shared<> reference to it.
#include "framecache/cpython.h"
//
#include "framecache/eval_frame.h"

#include <exception>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "framecache/callback_types.h"
#include "framecache/capture_profile.h"
#include "framecache/extra_state.h"
#include "framecache/runtime_config.h"
#include "framecache/stack_guard.h"
#include "framecache/thread_state.h"

namespace framecache {

namespace {

cpy::EvalFrameFn g_previous = nullptr;  // the evaluator we chain to (null: CPython's)
int g_active_threads = 0;
Py_ssize_t g_hook_extra_index = -1;  // extra_state_index(), read once the hook is installed
PyObject* g_warning_category = nullptr;  // borrowed from the module that set it
// The frame this thread is handing to g_previous. An evaluator installed on
// top of ours that chains back to us, and that ours was later installed on
// top of again (off, then on), makes a cycle: ours -> it -> ours -> ... The
// second visit of a frame runs it with CPython's evaluator instead.
// Initial-exec TLS like the other words the hook reads per call (stack_guard.h).
__thread cpy::Frame* t_passing_on __attribute__((tls_model("initial-exec"))) = nullptr;

PyObject* framecache_eval_frame(PyThreadState* ts, cpy::Frame* frame, int throwflag);

// Finishes the frame being evaluated if it was never handed to an evaluator
// (cpy::finish_unrun_frame: 3.12+ only, a no-op class on 3.11). One lives on
// the C stack of each evaluate(); run_normally marks the innermost one before
// the frame goes to an evaluator, which then owns (and on 3.12+ clears) it.
// finish() is called on the way out, not from the destructor: a daemon thread
// ended by pthread_exit during finalization unwinds through here, and must not
// touch its frames then (the destructor only unlinks).
class UnrunFrame {
 public:
  UnrunFrame(PyThreadState* ts, cpy::Frame* frame) : ts_(ts), frame_(frame) {
    if constexpr (cpy::kHookFinishesUnrunFrames) {
      outer_ = t_current;
      t_current = this;
    }
  }
  ~UnrunFrame() {
    if constexpr (cpy::kHookFinishesUnrunFrames) t_current = outer_;
  }
  // Passes `result` (new reference or null) through.
  PyObject* finish(PyObject* result) {
    if constexpr (cpy::kHookFinishesUnrunFrames) {
      if (!handed_off_) cpy::finish_unrun_frame(ts_, frame_);
    }
    return result;
  }
  UnrunFrame(const UnrunFrame&) = delete;
  UnrunFrame& operator=(const UnrunFrame&) = delete;
  static void hand_off(cpy::Frame* frame) {
    if constexpr (cpy::kHookFinishesUnrunFrames) {
      assert(t_current != nullptr && t_current->frame_ == frame);
      (void)frame;
      t_current->handed_off_ = true;
    }
  }

 private:
  static __thread UnrunFrame* t_current __attribute__((tls_model("initial-exec")));
  PyThreadState* ts_;
  cpy::Frame* frame_;
  UnrunFrame* outer_ = nullptr;
  bool handed_off_ = false;
};
__thread UnrunFrame* UnrunFrame::t_current = nullptr;

// New reference, or null with an error set.
PyObject* run_previous_plain(PyThreadState* ts, cpy::Frame* frame, int throwflag) {
  if (g_previous == nullptr) return cpy::eval_frame_default(ts, frame, throwflag);
  cpy::Frame* saved = t_passing_on;
  t_passing_on = frame;
  PyObject* result = g_previous(ts, frame, throwflag);
  t_passing_on = saved;
  return result;
}

// A frame run as it is, by the evaluator this hook replaced or CPython's. During a
// capture (3.11) the capture's filter picks the frame's events (capture_profile.h).
inline PyObject* run_previous(PyThreadState* ts, cpy::Frame* frame, int throwflag) {
  if (capture_profile_running(ts)) {
    return run_with_capture_events(ts, frame, throwflag, &run_previous_plain);
  }
  return run_previous_plain(ts, frame, throwflag);
}

PyObject* run_normally(ThreadState* st, PyThreadState* ts, cpy::Frame* frame,
                       FrameAction recursive) {
  CapScope cap(st, recursive);
  UnrunFrame::hand_off(frame);
  return run_previous(ts, frame, 0);
}

PyObject* run_entry(ThreadState* st, PyThreadState* ts, cpy::Frame* frame, CacheEntry& entry,
                    FrameAction recursive, uint64_t export_ticket = 0) {
  CapScope cap(st, recursive);
  return entry.run(ts, frame, export_ticket);
}

// Finds the first entry of options tag `tag` whose guards pass (entries of
// other tags are skipped before their guards run). 0 (hit in *out, or miss),
// or -1 with an error set.
int lookup(ThreadState* st, ExtraState& es, cpy::Frame* frame, uint64_t tag,
           Shared<CacheEntry>* out, uint64_t* export_ticket) {
  if (es.entries().empty()) return 0;
  SuspendScope suspend(st);
  // A guard that runs Python can change this list (reset_code, another
  // thread compiling). Start again when it changes; give up (a miss, which
  // is always safe) if it keeps changing.
  for (int attempt = 0; attempt < 4; ++attempt) {
    const uint64_t generation = es.generation();
    bool changed = false;
    for (size_t i = 0; i < es.entries().size(); ++i) {
      if (es.entries()[i]->tag() != tag) continue;
      Shared<CacheEntry> entry = es.entries()[i];
      const int passed = entry->check(frame, export_ticket);
      if (passed < 0) return -1;
      if (es.generation() != generation) {
        changed = true;
        break;
      }
      if (passed == 1) {
        entry->record_hit();
        if (runtime_config().lru) es.move_to_front(entry.get());
        *out = std::move(entry);
        return 0;
      }
    }
    if (!changed) return 0;
  }
  return 0;
}

std::string code_location(PyCodeObject* code) {
  const char* name = PyUnicode_AsUTF8(cpy::code_qualname(code));
  const char* file = name ? PyUnicode_AsUTF8(code->co_filename) : nullptr;
  if (name == nullptr || file == nullptr) {
    PyErr_Clear();
    return "<code>";
  }
  return std::string(name) + " (" + file + ":" + std::to_string(code->co_firstlineno) + ")";
}

// Gives the recompile-limit warning, once per code (either limit), listing
// why each of `entries` (those the limit counted) failed on this frame. 0, or
// -1 when the warning was turned into an exception.
enum class Limit { kRecompile, kAccumulated, kObjectsLost };

int warn_recompile_limit(ExtraState& es, cpy::Frame* frame, Limit limit,
                         const std::vector<Shared<CacheEntry>>& entries) {
  auto& cfg = runtime_config();
  if (es.limit_warned) return 0;
  es.limit_warned = true;
  std::string which;
  switch (limit) {
    case Limit::kRecompile:
      which = "recompile limit (" + std::to_string(cfg.recompile_limit) + " compiles)";
      break;
    case Limit::kAccumulated:
      which = "accumulated recompile limit (" + std::to_string(cfg.accumulated_recompile_limit) +
              " entries on this code)";
      break;
    case Limit::kObjectsLost:
      which = "recompile limit (" + std::to_string(cfg.recompile_limit) +
              " compiles for objects that died before their entry ran again: a new object on "
              "every call)";
      break;
  }
  std::string msg = "framecache: " + code_location(cpy::frame_code(frame)) + " reached the " +
                    which +
                    "; it now runs its cached entries or the original code, without compiling.";
  size_t index = 0;
  ThreadState* st = thread_state_peek();
  for (auto& entry : entries) {
    std::vector<std::string> reasons;
    {
      SuspendScope suspend(st);
      reasons = entry->failure_reasons(frame);
    }
    msg += "\n  entry " + std::to_string(index++) + " failed:";
    for (const auto& r : reasons) msg += "\n    " + r;
    if (index >= 8) break;
  }
  PyObject* category = g_warning_category ? g_warning_category : PyExc_RuntimeWarning;
  // The warnings machinery (filters, showwarning) is not the user's code:
  // its frames must not be looked up or handed to the callback.
  SuspendScope suspend(st);
  return PyErr_WarnEx(category, msg.c_str(), 1);
}

// Builds the entry a callback returned, after checking it fits the frame.
// Null with an error set if it does not.
Shared<CacheEntry> make_entry(PyCodeObject* original, const GuardedCode& gc, uint64_t tag,
                              cpy::Frame* frame) {
  if (!check_code_compatible(original, gc.code.ptr())) return Shared<CacheEntry>();
  try {
    Shared<CacheEntry> entry(new CacheEntry(original, gc.code.ptr(), gc.guard_manager.ptr(),
                                            gc.compile_id.ptr(), gc.trace_annotation, tag,
                                            gc.export_locals));
    entry->record_identity(frame, gc.identity_locals);
    return entry;
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();  // ValueError for export locals that do not fit
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return Shared<CacheEntry>();
}

// Makes the code run RUN_ONLY under `tag` from now on.
void stop_compiling(ExtraState& es, uint64_t tag) {
  FrameExecStrategy s = es.strategy_for(tag);
  s.cur_action = strongest(s.cur_action, FrameAction::RUN_ONLY);
  es.set_strategy(tag, s);
}

// The recompile limits, dynamo's way. The accumulated limit caps the entries
// one code object has (every tag); past it the code runs RUN_ONLY. The
// recompile limit counts the entries of this frame's tag whose
// identity-guarded locals are this frame's objects (CacheEntry::same_identity):
// a first compile for another instance of a class is not a recompile. Past it
// this frame runs without compiling; when the entries that pin no object are
// enough on their own, every frame is past it and the code runs RUN_ONLY
// under this tag. Entries whose object died before they ever ran again count
// too, on their own: a frame handed a new object on every call (an __init__,
// a cache made per call) would otherwise compile on every call until the
// accumulated limit, each compile useless once its object is gone. True when
// the frame must not compile (-1 in *error when the warning became an
// exception).
bool over_recompile_limits(ExtraState& es, cpy::Frame* frame, uint64_t tag, int* error) {
  const auto& cfg = runtime_config();
  *error = 0;
  if (es.compiles >= cfg.accumulated_recompile_limit) {
    stop_compiling(es, tag);
    std::vector<Shared<CacheEntry>> all(es.entries().begin(), es.entries().end());
    *error = warn_recompile_limit(es, frame, Limit::kAccumulated, all);
    return true;
  }
  std::vector<Shared<CacheEntry>> counted;
  std::vector<Shared<CacheEntry>> lost;
  int64_t unpinned = 0;
  for (const auto& entry : es.entries()) {
    if (entry->tag() != tag) continue;
    if (entry->has_identity() && entry->hits() == 0 && entry->identity_lost()) {
      lost.push_back(entry);
      continue;
    }
    if (!entry->same_identity(frame)) continue;
    counted.push_back(entry);
    if (!entry->has_identity()) ++unpinned;
  }
  if (static_cast<int64_t>(lost.size()) >= cfg.recompile_limit) {
    stop_compiling(es, tag);
    *error = warn_recompile_limit(es, frame, Limit::kObjectsLost, lost);
    return true;
  }
  if (static_cast<int64_t>(counted.size()) < cfg.recompile_limit) return false;
  if (unpinned >= cfg.recompile_limit) stop_compiling(es, tag);
  *error = warn_recompile_limit(es, frame, Limit::kRecompile, counted);
  return true;
}

PyObject* handle_miss(ThreadState* st, PyThreadState* ts, cpy::Frame* frame,
                      Shared<ExtraState> es, FrameAction recursive) {
  PyCodeObject* code = cpy::frame_code(frame);
  auto& cfg = runtime_config();
  // While the interpreter finalizes, nothing compiles: module globals (the
  // callback's, framecache's own) may be cleared and imports fail. Cached
  // entries still ran in lookup; the frame runs as it would without the hook.
  if (cpy::interpreter_finalizing()) return run_normally(st, ts, frame, recursive);
  const uint64_t tag = st->tag;
  int limit_error = 0;
  if (over_recompile_limits(*es, frame, tag, &limit_error)) {
    if (limit_error < 0) return nullptr;
    return run_normally(st, ts, frame, recursive);
  }

  // The callback may replace this thread's callback or reset this code.
  // What is alive across the call is held by Refs, not pybind11 objects: a
  // thread ended at interpreter exit while inside the callback unwinds through
  // here, and only Refs know not to release references then (see ref.h).
  Ref callback = st->callback;
  FrameView* view = new FrameView(frame);
  Ref view_obj;
  Ref first;
  try {
    view_obj = Ref::steal(py::cast(view, py::return_value_policy::take_ownership).release().ptr());
    // The first entry of this tag: the one whose guard failures explain a recompile.
    Shared<CacheEntry> first_entry;
    for (const auto& entry : es->entries()) {
      if (entry->tag() == tag) {
        first_entry = entry;
        break;
      }
    }
    first = Ref::steal(first_entry ? py::cast(CacheEntryView{first_entry}).release().ptr()
                                   : Py_NewRef(Py_None));
  } catch (py::error_already_set& e) {
    e.restore();
    return nullptr;
  }
  Ref result;
  {
    SuspendScope suspend(st);
    PyObject* args[] = {view_obj.get(), first.get(), es->frame_state()};  // borrowed
    result = Ref::steal(PyObject_Vectorcall(callback.get(), args, 3, nullptr));
  }
  view->invalidate();
  if (!result) {
    // A RecursionError the callback hit (its frames run on top of the user's,
    // and each costs C stack): the frame was not compiled, so it runs as it
    // would without the hook. If the recursion is real, it raises its own
    // RecursionError in the user's frames, with the user's traceback.
    if (PyErr_ExceptionMatches(PyExc_RecursionError)) {
      PyErr_Clear();
      return run_normally(st, ts, frame, recursive);
    }
    return nullptr;
  }

  if (result.get() == Py_None) return run_normally(st, ts, frame, recursive);
  // A type check that reads no attribute: py::isinstance would ask the
  // result's __class__, which may raise (a C++ exception escaping the hook
  // would end the process).
  py::handle result_h(result.get());
  auto* result_type = reinterpret_cast<PyTypeObject*>(py::type::of<CallbackResult>().ptr());
  if (!PyObject_TypeCheck(result.get(), result_type)) {
    PyErr_Format(PyExc_TypeError,
                 "framecache callback must return None or a CallbackResult, got %.200s",
                 Py_TYPE(result.get())->tp_name);
    return nullptr;
  }
  const auto& cr = result_h.cast<const CallbackResult&>();
  Shared<CacheEntry> entry;
  if (!cr.guarded_code.is_none()) {
    entry = make_entry(code, cr.guarded_code.cast<const GuardedCode&>(), tag, frame);
    if (!entry) return nullptr;
  }
  // The callback may have reset this code: commit to its current state.
  ExtraState* current = extra_state_ensure(code);
  if (current == nullptr) return nullptr;
  Shared<ExtraState> target(current);
  FrameExecStrategy strategy = cr.strategy.value_or(target->strategy_for(tag));
  if (cr.strategy && cr.apply_to_code) target->set_strategy(tag, *cr.strategy);
  if (!entry) return run_normally(st, ts, frame, strategy.recursive_action);
  target->add_front(entry);
  ++target->compiles;
  ++cfg.accumulated_compiles;  // for information only
  return run_entry(st, ts, frame, *entry, strongest(recursive, strategy.recursive_action));
}

PyObject* evaluate_frame(ThreadState* st, PyThreadState* ts, cpy::Frame* frame) {
  PyCodeObject* code = cpy::frame_code(frame);
  ExtraState* raw = extra_state_ensure(code);
  if (raw == nullptr) return nullptr;
  Shared<ExtraState> es(raw);
  const uint64_t tag = st->tag;
  const FrameExecStrategy strategy = es->strategy_for(tag);
  FrameAction action = strongest(strategy.cur_action, st->cap);
  if (st->mode == EvalMode::kRunOnly) action = strongest(action, FrameAction::RUN_ONLY);
  const FrameAction recursive = strategy.recursive_action;
  if (action == FrameAction::SKIP) return run_normally(st, ts, frame, recursive);

  Shared<CacheEntry> hit;
  uint64_t export_ticket = 0;
  if (lookup(st, *es, frame, tag, &hit, &export_ticket) < 0) return nullptr;
  if (hit) return run_entry(st, ts, frame, *hit, recursive, export_ticket);
  if (action == FrameAction::RUN_ONLY) return run_normally(st, ts, frame, recursive);
  return handle_miss(st, ts, frame, std::move(es), recursive);
}

// The fast exit of frames the hook has nothing to do for: a code marked SKIP
// (a fallback, library code), or in run-only mode a code with no entries or
// no ExtraState at all (a code that never compiled gets none then). They run
// with the chained evaluator straight away (a tail call when the cap stays),
// without evaluate()'s bookkeeping: no ExtraState is created and no reference
// taken (nothing read here is used after run_previous starts, so a reset
// during the frame cannot dangle). Every other frame goes to evaluate().
// These exits cost little on top of what any evaluator costs CPython (its
// specialisation of Python-to-Python calls): see benchmarks/python_overhead.py.
PyObject* evaluate(ThreadState* st, PyThreadState* ts, cpy::Frame* frame);

// How a frame whose code has ExtraState `es` (null: none yet) ends on those
// exits; with kRunRaisingCap, *recursive is the cap to raise for it. The
// strategy is this thread's options tag's: a fallback one framecache.compile
// wrapper decided never decides for another (extra_state.h).
enum class Exit { kEvaluate, kRunAsIs, kRunRaisingCap };
[[gnu::always_inline]] inline Exit nothing_to_do_exit(const ThreadState* st, const ExtraState* es,
                                                      FrameAction* recursive) {
  const bool run_only = st->mode == EvalMode::kRunOnly;
  // No ExtraState: in compile mode a first sight (the callback decides); in
  // run-only mode nothing cached.
  if (es == nullptr) return run_only ? Exit::kRunAsIs : Exit::kEvaluate;
  const FrameExecStrategy& strategy = es->strategy_for(st->tag);
  const FrameAction action = strongest(strategy.cur_action, st->cap);
  if (action != FrameAction::SKIP && !((run_only || action == FrameAction::RUN_ONLY) &&
                                       es->entries().empty())) {
    return Exit::kEvaluate;
  }
  *recursive = strategy.recursive_action;
  return strongest(st->cap, *recursive) == st->cap ? Exit::kRunAsIs : Exit::kRunRaisingCap;
}

PyObject* evaluate_unless_nothing_to_do(ThreadState* st, PyThreadState* ts, cpy::Frame* frame) {
  const auto* es = static_cast<const ExtraState*>(
      cpy::code_get_extra(cpy::frame_code(frame), g_hook_extra_index));
  FrameAction recursive = FrameAction::DEFAULT;
  switch (nothing_to_do_exit(st, es, &recursive)) {
    case Exit::kEvaluate:
      return evaluate(st, ts, frame);
    case Exit::kRunAsIs:
      return run_previous(ts, frame, 0);
    case Exit::kRunRaisingCap:
      break;
  }
  CapScope cap(st, recursive);
  return run_previous(ts, frame, 0);
}

// No C++ exception may leave the hook: the frames above are CPython's C
// frames, and one passing through them ends the process (std::terminate).
// The paths below report errors as Python errors; this turns whatever a
// pybind11 call still throws into one too, before the frame is finished, so
// that on 3.12+ a frame never handed to an evaluator is still cleared and
// popped. (A thread ended at exit unwinds with abi::__forced_unwind, which is
// no std::exception and passes on.)
PyObject* evaluate(ThreadState* st, PyThreadState* ts, cpy::Frame* frame) {
  UnrunFrame unrun(ts, frame);
  PyObject* result = nullptr;
  try {
    result = evaluate_frame(st, ts, frame);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_Format(PyExc_SystemError, "framecache: %s", e.what());
  }
  return unrun.finish(result);
}

// A frame the C stack has no room for (stack_guard.h): RecursionError, the
// frame never runs. Always null. Resumed generators and throw() are not
// refused: their frames have started and are finished by their owner.
PyObject* refuse_frame(PyThreadState* ts, cpy::Frame* frame) {
  stack::raise_exhausted();
  if constexpr (cpy::kHookFinishesUnrunFrames) cpy::finish_unrun_frame(ts, frame);
  return nullptr;
}

// Every frame the lean entry below does not finish itself.
[[gnu::noinline]] PyObject* eval_frame_full(PyThreadState* ts, cpy::Frame* frame, int throwflag) {
  if (g_previous != nullptr && frame == t_passing_on) {
    return cpy::eval_frame_default(ts, frame, throwflag);
  }
  ThreadState* st = thread_state_peek();
  if (st == nullptr) {
    if (stack::low() && throwflag == 0 && !cpy::frame_started(frame)) {
      return refuse_frame(ts, frame);
    }
    return run_previous(ts, frame, throwflag);
  }
  if (st->bypass != nullptr && st->bypass == cpy::frame_code(frame)) {
    st->bypass = nullptr;
    if (CacheEntry* entry = std::exchange(st->bypass_entry, nullptr)) {
      entry->receive_exports(frame, st->bypass_ticket);
    }
    return run_previous(ts, frame, throwflag);
  }
  if (stack::low() && throwflag == 0 && !cpy::frame_started(frame)) return refuse_frame(ts, frame);
  if (st->mode == EvalMode::kOff || st->suspended != 0 || throwflag != 0 ||
      st->cap == FrameAction::SKIP || cpy::frame_started(frame) ||
      cpy::tracing_active(ts, cpy::frame_code(frame))) {
    return run_previous(ts, frame, throwflag);
  }
  return evaluate_unless_nothing_to_do(st, ts, frame);
}


// The hook's entry: the exits that cost a Python call most often (a frame run
// as it is: a code marked SKIP, run-only with nothing cached, the hook off
// for this thread), decided as eval_frame_full decides them (nothing_to_do_exit),
// and ended with a tail call to CPython's evaluator. Anything
// else, or anything unusual (another evaluator chained, no thread state, a
// bypass, a throw, a low stack, the cap to raise), goes to eval_frame_full,
// which decides it all again from the start. Kept free of calls that return
// here, so that the compiler saves no registers on the way through.
PyObject* framecache_eval_frame(PyThreadState* ts, cpy::Frame* frame, int throwflag) {
  ThreadState* st = thread_state_peek();
  if (g_previous != nullptr || st == nullptr || st->bypass != nullptr || throwflag != 0 ||
      stack::low_or_unknown()) {
    return eval_frame_full(ts, frame, throwflag);
  }
  PyCodeObject* code = cpy::frame_code(frame);
  if (st->mode == EvalMode::kOff || st->suspended != 0 || st->cap == FrameAction::SKIP ||
      cpy::frame_started(frame) || cpy::tracing_active(ts, code)) {
    if (capture_profile_running(ts)) {
      return run_with_capture_events(ts, frame, 0, &cpy::eval_frame_default);
    }
    return cpy::eval_frame_default(ts, frame, 0);
  }
  const auto* es = static_cast<const ExtraState*>(cpy::code_get_extra(code, g_hook_extra_index));
  FrameAction recursive = FrameAction::DEFAULT;
  if (nothing_to_do_exit(st, es, &recursive) == Exit::kRunAsIs) {
    return cpy::eval_frame_default(ts, frame, 0);
  }
  return eval_frame_full(ts, frame, 0);
}

void install() {
  PyInterpreterState* interp = PyInterpreterState_Get();
  cpy::EvalFrameFn current = cpy::get_eval_frame(interp);
  if (current == framecache_eval_frame) return;
  g_hook_extra_index = extra_state_index();  // set_eval_frame_callback made it first
  // Chain to whatever was there (a debugger's evaluator), not to the default.
  g_previous = cpy::is_default_eval_frame(current) ? nullptr : current;
  cpy::set_eval_frame(interp, framecache_eval_frame);
}

void uninstall() {
  PyInterpreterState* interp = PyInterpreterState_Get();
  // If someone installed an evaluator on top of ours, leave the chain alone:
  // ours stays in it, doing nothing while every thread is off.
  if (cpy::get_eval_frame(interp) != framecache_eval_frame) return;
  cpy::set_eval_frame(interp, g_previous ? g_previous : cpy::default_eval_frame_fn());
  g_previous = nullptr;
}

}  // namespace

void note_mode_change(EvalMode before, EvalMode after) noexcept {
  const bool was_on = before != EvalMode::kOff;
  const bool is_on = after != EvalMode::kOff;
  if (was_on == is_on) return;
  if (is_on) {
    if (g_active_threads++ == 0) install();
  } else if (--g_active_threads == 0) {
    uninstall();
  }
}

int active_thread_count() noexcept { return g_active_threads; }

Ref set_eval_frame_callback(PyObject* callback, uint64_t tag) {
  EvalMode mode;
  if (callback == Py_None) {
    mode = EvalMode::kOff;
  } else if (callback == Py_False) {
    mode = EvalMode::kRunOnly;
  } else if (PyCallable_Check(callback)) {
    mode = EvalMode::kCompile;
  } else {
    PyErr_Format(PyExc_TypeError,
                 "set_eval_frame expects None (off), False (run-only) or a callable, got %.200s",
                 Py_TYPE(callback)->tp_name);
    return Ref();
  }
  if (extra_state_init() < 0) return Ref();
  ThreadState* st = thread_state_get();
  if (st == nullptr) return Ref();
  Ref previous = std::move(st->callback);
  st->callback = Ref::borrow(callback);
  st->tag = tag;
  const EvalMode before = st->mode;
  st->mode = mode;
  note_mode_change(before, mode);
  return previous;
}

Ref get_eval_frame_callback() {
  ThreadState* st = thread_state_peek();
  return Ref::borrow(st ? st->callback.get() : Py_None);
}

uint64_t get_eval_frame_tag() {
  ThreadState* st = thread_state_peek();
  return st ? st->tag : 0;
}

bool hook_installed() {
  return cpy::get_eval_frame(PyInterpreterState_Get()) == framecache_eval_frame;
}

void set_recompile_warning_category(PyObject* category) { g_warning_category = category; }

}  // namespace framecache

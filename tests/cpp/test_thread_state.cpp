// Per-thread hook state: set_eval_frame_callback modes and the previous value,
// TypeError for bad values, installing/uninstalling the hook as threads turn
// on and off (chaining to an evaluator installed before), the callback running
// suspended, CapScope/SuspendScope, and one state per thread.
#include <gtest/gtest.h>

#include <thread>

#include "framecache/cpython.h"
#include "framecache/eval_frame.h"
#include "framecache/thread_state.h"
#include "support.h"

namespace framecache {
namespace {

namespace py = pybind11;
using fctest::code_of;
using fctest::define;
using fctest::fc;
using fctest::ProbeEvaluator;
using fctest::take_error;

// Sets this thread's callback and returns the previous one (asserting success).
py::object set_callback(const py::handle& cb) {
  Ref previous = set_eval_frame_callback(cb.ptr());
  if (!previous) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(previous.release());
}

class ThreadStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    set_callback(py::none());
    ASSERT_FALSE(hook_installed());
    ASSERT_EQ(active_thread_count(), 0);
    callback_ = define("def cb(frame, entry, frame_state):\n    return None\n", "cb");
  }
  void TearDown() override {
    set_callback(py::none());
    EXPECT_FALSE(hook_installed());
  }
  py::object callback_;
};

TEST_F(ThreadStateTest, ModesAndPreviousValues) {
  py::object previous = set_callback(callback_);
  EXPECT_TRUE(previous.is_none());
  ThreadState* st = thread_state_peek();
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->mode, EvalMode::kCompile);
  EXPECT_EQ(st->callback.get(), callback_.ptr());
  EXPECT_TRUE(hook_installed());
  EXPECT_EQ(active_thread_count(), 1);
  EXPECT_EQ(get_eval_frame_callback().get(), callback_.ptr());

  previous = set_callback(py::bool_(false));
  EXPECT_TRUE(previous.is(callback_)) << "the previous callback itself comes back";
  EXPECT_EQ(st->mode, EvalMode::kRunOnly);
  EXPECT_TRUE(hook_installed());
  EXPECT_EQ(active_thread_count(), 1);

  previous = set_callback(py::bool_(false));
  EXPECT_TRUE(previous.is(py::bool_(false)));
  EXPECT_EQ(active_thread_count(), 1) << "the same thread is counted once";

  previous = set_callback(py::none());
  EXPECT_TRUE(previous.is(py::bool_(false)));
  EXPECT_EQ(st->mode, EvalMode::kOff);
  EXPECT_FALSE(hook_installed());
  EXPECT_EQ(active_thread_count(), 0);
  EXPECT_TRUE(get_eval_frame_callback().get() == Py_None);
}

TEST_F(ThreadStateTest, PythonBindingRoundTrip) {
  py::module_ m = fc();
  EXPECT_TRUE(m.attr("set_eval_frame")(callback_).is_none());
  EXPECT_TRUE(m.attr("get_eval_frame")().is(callback_));
  EXPECT_TRUE(m.attr("hook_installed")().cast<bool>());
  EXPECT_TRUE(m.attr("set_eval_frame")(py::none()).is(callback_));
  EXPECT_FALSE(m.attr("hook_installed")().cast<bool>());
}

TEST_F(ThreadStateTest, BadValuesRaiseTypeErrorAndChangeNothing) {
  set_callback(callback_);
  for (py::object bad :
       {py::object(py::int_(42)), py::object(py::str("s")), py::object(py::bool_(true))}) {
    Ref r = set_eval_frame_callback(bad.ptr());
    EXPECT_FALSE(r);
    const std::string expected = std::string(
                                     "TypeError: set_eval_frame expects None (off), False "
                                     "(run-only) or a callable, got ") +
                                 Py_TYPE(bad.ptr())->tp_name;
    EXPECT_EQ(take_error(), expected);
    EXPECT_EQ(thread_state_peek()->mode, EvalMode::kCompile);
    EXPECT_EQ(thread_state_peek()->callback.get(), callback_.ptr());
    EXPECT_TRUE(hook_installed());
    EXPECT_EQ(active_thread_count(), 1);
  }
  try {
    fc().attr("set_eval_frame")(42);
    FAIL() << "set_eval_frame(42) must raise";
  } catch (py::error_already_set& e) {
    EXPECT_TRUE(e.matches(PyExc_TypeError));
  }
}

TEST_F(ThreadStateTest, HookChainsToAnEvaluatorInstalledBefore) {
  py::object fn = define("def f(x):\n    return x * 2\n", "f");
  {
    ProbeEvaluator probe(code_of(fn), &ProbeEvaluator::run_normally);
    PyInterpreterState* interp = PyInterpreterState_Get();
    const cpy::EvalFrameFn debugger = cpy::get_eval_frame(interp);
    set_callback(callback_);
    EXPECT_TRUE(hook_installed());
    EXPECT_NE(cpy::get_eval_frame(interp), debugger);
    // Frames still reach the evaluator that was there first.
    EXPECT_EQ(fn(21).cast<int>(), 42);
    EXPECT_EQ(probe.frames_seen(), 1);
    set_callback(py::none());
    EXPECT_FALSE(hook_installed());
    EXPECT_EQ(cpy::get_eval_frame(interp), debugger)
        << "turning off restores the chained evaluator";
    EXPECT_EQ(fn(1).cast<int>(), 2);
    EXPECT_EQ(probe.frames_seen(), 2);
  }
}

TEST_F(ThreadStateTest, AnEvaluatorInstalledOnTopIsLeftAlone) {
  PyInterpreterState* interp = PyInterpreterState_Get();
  py::object fn = define("def f(x):\n    return x + 1\n", "f");
  set_callback(callback_);
  ASSERT_TRUE(hook_installed());
  const cpy::EvalFrameFn ours = cpy::get_eval_frame(interp);
  {
    ProbeEvaluator probe(code_of(fn), &ProbeEvaluator::run_normally);
    const cpy::EvalFrameFn on_top = cpy::get_eval_frame(interp);
    set_callback(py::none());
    EXPECT_EQ(cpy::get_eval_frame(interp), on_top) << "someone else's evaluator is not replaced";
    EXPECT_EQ(fn(1).cast<int>(), 2);
  }
  // The probe restored ours, which now does nothing while every thread is off;
  // turning a thread on and off again takes it out cleanly.
  EXPECT_EQ(cpy::get_eval_frame(interp), ours);
  EXPECT_EQ(fn(2).cast<int>(), 3);
  set_callback(callback_);
  set_callback(py::none());
  EXPECT_NE(cpy::get_eval_frame(interp), ours);
}

TEST_F(ThreadStateTest, CallbackRunsSuspendedWithAFrameView) {
  py::object fn = define("def f(x, y=5):\n    return x + y\n", "f");
  int calls = 0;
  int suspended_inside = -1;
  std::string code_name, entry_repr;
  py::dict locals_seen;
  py::object state_seen;
  py::cpp_function cb([&](py::object frame, py::object entry, py::object frame_state) {
    ++calls;
    suspended_inside = thread_state_peek()->suspended;
    code_name = frame.attr("f_code").attr("co_name").cast<std::string>();
    locals_seen = frame.attr("f_locals");
    entry_repr = py::repr(entry).cast<std::string>();
    state_seen = frame_state;
    return py::none();
  });
  set_callback(cb);
  EXPECT_EQ(fn(1).cast<int>(), 6) << "a callback returning None runs the frame normally";
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(suspended_inside, 1) << "the hook is off for this thread while the callback runs";
  EXPECT_EQ(thread_state_peek()->suspended, 0);
  EXPECT_EQ(thread_state_peek()->cap, FrameAction::DEFAULT);
  EXPECT_EQ(code_name, "f");
  EXPECT_EQ(locals_seen["x"].cast<int>(), 1);
  EXPECT_EQ(locals_seen["y"].cast<int>(), 5);
  EXPECT_EQ(entry_repr, "None") << "no entry yet";
  EXPECT_TRUE(PyDict_Check(state_seen.ptr()));

  // Run-only never calls the callback.
  set_callback(py::bool_(false));
  EXPECT_EQ(fn(2).cast<int>(), 7);
  EXPECT_EQ(calls, 1);
  // Off: nothing at all.
  set_callback(py::none());
  EXPECT_EQ(fn(3).cast<int>(), 8);
  EXPECT_EQ(calls, 1);
}

TEST_F(ThreadStateTest, CallbackExceptionReachesTheCallerWithStateRestored) {
  py::object fn = define("def f(x):\n    return x\n", "f");
  py::object raising =
      define("def cb(frame, entry, state):\n    raise LookupError('nope')\n", "cb");
  set_callback(raising);
  try {
    fn(1);
    FAIL() << "the callback's exception must reach the caller";
  } catch (py::error_already_set& e) {
    EXPECT_TRUE(e.matches(PyExc_LookupError));
  }
  ThreadState* st = thread_state_peek();
  EXPECT_EQ(st->suspended, 0);
  EXPECT_EQ(st->cap, FrameAction::DEFAULT);
  EXPECT_EQ(st->bypass, nullptr);
  EXPECT_EQ(st->mode, EvalMode::kCompile);
}

TEST_F(ThreadStateTest, ThreadStateIsStableAndOwnedByThePyThreadState) {
  ThreadState* st = thread_state_get();
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(thread_state_get(), st);
  EXPECT_EQ(thread_state_peek(), st);
  EXPECT_EQ(st->owner, PyThreadState_Get());
  PyObject* dict = PyThreadState_GetDict();
  ASSERT_NE(dict, nullptr);
  PyObject* capsule = PyDict_GetItemString(dict, "__framecache_thread_state__");
  ASSERT_NE(capsule, nullptr);
  EXPECT_EQ(PyCapsule_GetPointer(capsule, "framecache.ThreadState"), st);
}

TEST(CapScope, RaisesTheCapAndRestoresIt) {
  ThreadState* st = thread_state_get();
  ASSERT_NE(st, nullptr);
  st->cap = FrameAction::DEFAULT;
  {
    CapScope run_only(st, FrameAction::RUN_ONLY);
    EXPECT_EQ(st->cap, FrameAction::RUN_ONLY);
    {
      CapScope weaker(st, FrameAction::DEFAULT);
      EXPECT_EQ(st->cap, FrameAction::RUN_ONLY) << "a callee never lowers its caller's cap";
      {
        CapScope skip(st, FrameAction::SKIP);
        EXPECT_EQ(st->cap, FrameAction::SKIP);
      }
      EXPECT_EQ(st->cap, FrameAction::RUN_ONLY);
    }
    EXPECT_EQ(st->cap, FrameAction::RUN_ONLY);
  }
  EXPECT_EQ(st->cap, FrameAction::DEFAULT);
}

TEST(SuspendScope, NestsAndRestores) {
  ThreadState* st = thread_state_get();
  ASSERT_NE(st, nullptr);
  const int before = st->suspended;
  {
    SuspendScope a(st);
    EXPECT_EQ(st->suspended, before + 1);
    {
      SuspendScope b(st);
      EXPECT_EQ(st->suspended, before + 2);
    }
    EXPECT_EQ(st->suspended, before + 1);
  }
  EXPECT_EQ(st->suspended, before);
}

TEST_F(ThreadStateTest, EachThreadHasItsOwnState) {
  set_callback(callback_);
  ThreadState* main_state = thread_state_peek();
  ThreadState* other_state = nullptr;
  PyObject* other_previous = nullptr;
  int active_in_thread = -1;
  bool installed_in_thread = false;
  {
    py::gil_scoped_release release;
    std::thread worker([&] {
      py::gil_scoped_acquire acquire;  // a new PyThreadState, cleared when this scope ends
      Ref previous = set_eval_frame_callback(Py_False);
      other_previous = previous.get();  // compared by identity only
      other_state = thread_state_peek();
      active_in_thread = active_thread_count();
      installed_in_thread = hook_installed();
      // The thread ends still in run-only mode: clearing its PyThreadState
      // frees its state and counts it off.
    });
    worker.join();
  }
  EXPECT_EQ(other_previous, Py_None) << "a new thread starts with no callback";
  EXPECT_NE(other_state, nullptr);
  EXPECT_NE(other_state, main_state);
  EXPECT_EQ(active_in_thread, 2);
  EXPECT_TRUE(installed_in_thread);
  EXPECT_EQ(thread_state_peek(), main_state);
  EXPECT_EQ(main_state->mode, EvalMode::kCompile) << "one thread's mode never leaks into another";
  EXPECT_EQ(main_state->callback.get(), callback_.ptr());
  EXPECT_EQ(active_thread_count(), 1) << "the finished thread no longer counts";
  EXPECT_TRUE(hook_installed());
}

TEST_F(ThreadStateTest, LastThreadEndingUninstallsTheHook) {
  bool installed_in_thread = false;
  {
    py::gil_scoped_release release;
    std::thread worker([&] {
      py::gil_scoped_acquire acquire;
      Ref previous = set_eval_frame_callback(Py_False);
      installed_in_thread = hook_installed();
    });
    worker.join();
  }
  EXPECT_TRUE(installed_in_thread);
  EXPECT_EQ(active_thread_count(), 0);
  EXPECT_FALSE(hook_installed());
}

}  // namespace
}  // namespace framecache

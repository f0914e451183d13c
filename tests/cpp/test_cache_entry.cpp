// CacheEntry: construction with a RootGuardManager and with a Python object
// having check(); check(), failure_reasons() and run() on real, unstarted
// frames (handed over by a probe evaluator); check_code_compatible accepting
// and rejecting layouts with clear errors.
#include <gtest/gtest.h>

#include "framecache/cache_entry.h"
#include "framecache/guards/root_guard_manager.h"
#include "framecache/thread_state.h"
#include "support.h"

namespace framecache {
namespace {

namespace py = pybind11;
using fctest::code_of;
using fctest::define;
using fctest::new_root;
using fctest::ProbeEvaluator;
using fctest::run_source;
using fctest::take_error;

constexpr const char* kGuards = R"(
class Guard:
    def __init__(self, ok=True, raises=None):
        self.ok = ok
        self.raises = raises
        self.seen = []
    def check(self, f_locals):
        self.seen.append(dict(f_locals))
        if self.raises is not None:
            raise self.raises
        return self.ok

class Info:
    def __init__(self, failures):
        self.failures = failures

class VerboseGuard(Guard):
    def check_verbose(self, f_locals):
        return Info(["x is wrong: " + repr(f_locals.get("x"))])

class NoCheck:
    pass
)";

Shared<CacheEntry> make_entry(PyCodeObject* original, const py::handle& code, const py::handle& gm,
                              const py::handle& compile_id = py::none(),
                              const std::string& annotation = "") {
  return Shared<CacheEntry>(
      new CacheEntry(original, code.ptr(), gm.ptr(), compile_id.ptr(), annotation));
}

// The outcome of entry->check() on every frame of `fn` while calling it.
struct CheckRecorder {
  std::vector<int> results;
  std::vector<std::vector<std::string>> reasons;
};

// Calls fn(*args) with a probe that checks `entry` on the frame (recording
// the result and, on failure, the reasons), then runs the frame normally.
py::object call_checked(const py::object& fn, CacheEntry& entry, CheckRecorder& rec,
                        const py::tuple& args) {
  ProbeEvaluator probe(
      code_of(fn), [&](PyThreadState* ts, _PyInterpreterFrame* frame) -> PyObject* {
        const int r = entry.check(frame);
        rec.results.push_back(r);
        if (r < 0) return nullptr;
        rec.reasons.push_back(r == 0 ? entry.failure_reasons(frame) : std::vector<std::string>{});
        return ProbeEvaluator::run_normally(ts, frame);
      });
  return fn(*args);
}

// Calls fn(*args, **kwargs) with a probe that runs `entry` in place of the frame.
py::object call_entry(const py::object& fn, CacheEntry& entry, const py::tuple& args,
                      const py::dict& kwargs = py::dict()) {
  ThreadState* st = thread_state_get();
  if (st == nullptr) throw py::error_already_set();
  ProbeEvaluator probe(code_of(fn), [&](PyThreadState* ts, _PyInterpreterFrame* frame) {
    return entry.run(ts, frame);
  });
  py::object result = fn(*args, **kwargs);
  EXPECT_EQ(probe.frames_seen(), 1);
  EXPECT_EQ(st->bypass, nullptr) << "run() restores the bypass code";
  return result;
}

class CacheEntryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ns_ = run_source(kGuards);
    fn_ = define("def f(x, y):\n    return ('original', x, y)\n", "f");
    code_ = code_of(fn_);
  }
  py::object copy_code() { return fn_.attr("__code__").attr("replace")(); }
  py::dict ns_;
  py::object fn_;
  PyCodeObject* code_ = nullptr;
};

// --- construction ---------------------------------------------------------

TEST_F(CacheEntryTest, ConstructWithRootGuardManager) {
  py::object root = new_root();
  root.attr("local")("x").attr("type_match")(py::type::of(py::int_(0)));
  py::object code = copy_code();
  py::str compile_id("0/1");
  const Py_ssize_t root_refs = fctest::refcount(root);
  {
    Shared<CacheEntry> e = make_entry(code_, code, root, compile_id, "ann");
    EXPECT_EQ(e->root(), root.cast<guards::RootGuardManager*>());
    EXPECT_EQ(e->guard_manager(), root.ptr());
    EXPECT_EQ(reinterpret_cast<PyObject*>(e->code()), code.ptr());
    EXPECT_EQ(e->compile_id(), compile_id.ptr());
    EXPECT_EQ(e->trace_annotation(), "ann");
    EXPECT_EQ(e->hits(), 0u);
    e->record_hit();
    e->record_hit();
    EXPECT_EQ(e->hits(), 2u);
    EXPECT_EQ(fctest::refcount(root), root_refs + 1) << "the entry owns one reference";
  }
  EXPECT_EQ(fctest::refcount(root), root_refs) << "and releases it when it dies";
}

TEST_F(CacheEntryTest, ConstructWithPythonCheckObject) {
  py::object gm = ns_["Guard"]();
  Shared<CacheEntry> e = make_entry(code_, copy_code(), gm);
  EXPECT_EQ(e->root(), nullptr) << "a Python guard object is called through check()";
  EXPECT_EQ(e->guard_manager(), gm.ptr());
  EXPECT_EQ(e->compile_id(), Py_None);
  EXPECT_EQ(e->trace_annotation(), "");
}

TEST_F(CacheEntryTest, ConstructWithoutCheckRaises) {
  py::object bad = ns_["NoCheck"]();
  try {
    make_entry(code_, copy_code(), bad);
    FAIL() << "an object without check() must be rejected";
  } catch (py::error_already_set& e) {
    EXPECT_TRUE(e.matches(PyExc_AttributeError)) << e.what();
  }
}

// --- check() and failure_reasons() on real frames ---------------------------

TEST_F(CacheEntryTest, RootGuardsCheckFastLocalsOfAFrame) {
  py::object root = new_root();
  py::object int_t = py::type::of(py::int_(0)), str_t = py::type::of(py::str(""));
  root.attr("local")("x").attr("type_match")(int_t);
  root.attr("local")("y").attr("type_match")(str_t);
  Shared<CacheEntry> e = make_entry(code_, copy_code(), root);
  CheckRecorder rec;
  py::object r = call_checked(fn_, *e, rec, py::make_tuple(1, "a"));
  EXPECT_TRUE(r.equal(py::make_tuple("original", 1, "a"))) << "the probe ran the frame normally";
  call_checked(fn_, *e, rec, py::make_tuple("a", 1));
  call_checked(fn_, *e, rec, py::make_tuple(1, 2));
  ASSERT_EQ(rec.results, (std::vector<int>{1, 0, 0}));
  EXPECT_EQ(rec.reasons[1], (std::vector<std::string>{"L['x']: expected type int, got str",
                                                      "L['y']: expected type str, got int"}));
  EXPECT_EQ(rec.reasons[2], (std::vector<std::string>{"L['y']: expected type str, got int"}));
  EXPECT_FALSE(PyErr_Occurred());
}

TEST_F(CacheEntryTest, RootGuardsReadFreeVariablesAndUnboundLocals) {
  py::dict ns = run_source(R"(
def outer(z):
    def inner(a):
        tmp = a
        return a + z if isinstance(z, int) else tmp
    return inner
)");
  py::object with_int = ns["outer"](3), with_str = ns["outer"]("s");
  ASSERT_EQ(code_of(with_int), code_of(with_str));
  py::object root = new_root();
  py::object int_t = py::type::of(py::int_(0));
  root.attr("local")("a").attr("type_match")(int_t);
  root.attr("local")("z").attr("type_match")(int_t);
  py::object copy = with_int.attr("__code__").attr("replace")();
  Shared<CacheEntry> e = make_entry(code_of(with_int), copy, root);
  CheckRecorder rec;
  EXPECT_TRUE(call_checked(with_int, *e, rec, py::make_tuple(1)).equal(py::int_(4)));
  call_checked(with_str, *e, rec, py::make_tuple(1));
  ASSERT_EQ(rec.results, (std::vector<int>{1, 0}));
  EXPECT_EQ(rec.reasons[1], (std::vector<std::string>{"L['z']: expected type int, got str"}));

  // A local the unstarted frame has not bound yet fails, with a reason.
  py::object root2 = new_root();
  root2.attr("local")("tmp").attr("type_match")(int_t);
  Shared<CacheEntry> e2 = make_entry(code_of(with_int), copy, root2);
  CheckRecorder rec2;
  call_checked(with_int, *e2, rec2, py::make_tuple(1));
  ASSERT_EQ(rec2.results, (std::vector<int>{0}));
  ASSERT_EQ(rec2.reasons[0].size(), 1u);
  EXPECT_EQ(rec2.reasons[0][0].rfind("L['tmp']: local 'tmp' is not bound", 0), 0u)
      << rec2.reasons[0][0];
  EXPECT_FALSE(PyErr_Occurred());
}

TEST_F(CacheEntryTest, EmptyRootAlwaysPasses) {
  Shared<CacheEntry> e = make_entry(code_, copy_code(), new_root());
  CheckRecorder rec;
  call_checked(fn_, *e, rec, py::make_tuple(1, 2));
  call_checked(fn_, *e, rec, py::make_tuple("a", py::none()));
  EXPECT_EQ(rec.results, (std::vector<int>{1, 1}));
}

TEST_F(CacheEntryTest, PythonGuardObjectSeesTheFrameLocals) {
  py::object gm = ns_["Guard"]();
  Shared<CacheEntry> e = make_entry(code_, copy_code(), gm);
  CheckRecorder rec;
  call_checked(fn_, *e, rec, py::make_tuple(1, "a"));
  gm.attr("ok") = false;
  call_checked(fn_, *e, rec, py::make_tuple(2, "b"));
  ASSERT_EQ(rec.results, (std::vector<int>{1, 0}));
  py::list seen = gm.attr("seen");
  ASSERT_GE(py::len(seen), 2u);
  py::dict first;
  first["x"] = 1;
  first["y"] = "a";
  py::object seen0 = seen[0];
  EXPECT_TRUE(seen0.equal(first)) << py::repr(seen0).cast<std::string>();
  // Without check_verbose the reason names the guard object's type.
  EXPECT_EQ(rec.reasons[1],
            (std::vector<std::string>{"guard object Guard.check() returned False"}));
}

TEST_F(CacheEntryTest, PythonGuardObjectVerboseReasons) {
  py::object gm = ns_["VerboseGuard"](false);
  Shared<CacheEntry> e = make_entry(code_, copy_code(), gm);
  CheckRecorder rec;
  call_checked(fn_, *e, rec, py::make_tuple(5, "a"));
  ASSERT_EQ(rec.results, (std::vector<int>{0}));
  ASSERT_EQ(rec.reasons[0].size(), 1u);
  EXPECT_EQ(rec.reasons[0][0], "x is wrong: 5");
}

TEST_F(CacheEntryTest, OrdinaryExceptionInCheckFailsTheGuard) {
  py::object err = py::module_::import("builtins").attr("ValueError")("boom");
  py::object gm = ns_["Guard"](true, err);
  Shared<CacheEntry> e = make_entry(code_, copy_code(), gm);
  CheckRecorder rec;
  py::object r = call_checked(fn_, *e, rec, py::make_tuple(1, 2));
  EXPECT_EQ(rec.results, (std::vector<int>{0}));
  EXPECT_TRUE(r.equal(py::make_tuple("original", 1, 2))) << "the error was cleared";
}

TEST_F(CacheEntryTest, FatalExceptionInCheckPropagates) {
  py::object err = py::module_::import("builtins").attr("KeyboardInterrupt")();
  py::object gm = ns_["Guard"](true, err);
  Shared<CacheEntry> e = make_entry(code_, copy_code(), gm);
  CheckRecorder rec;
  try {
    call_checked(fn_, *e, rec, py::make_tuple(1, 2));
    FAIL() << "KeyboardInterrupt must reach the caller";
  } catch (py::error_already_set& ex) {
    EXPECT_TRUE(ex.matches(PyExc_KeyboardInterrupt)) << ex.what();
  }
  EXPECT_EQ(rec.results, (std::vector<int>{-1}));
}

// --- run() ----------------------------------------------------------------------

TEST_F(CacheEntryTest, RunCallsTheCachedCodeWithTheFramesArguments) {
  py::object compiled = define("def f(x, y):\n    return ('compiled', x, y)\n", "f");
  Shared<CacheEntry> e = make_entry(code_, compiled.attr("__code__"), new_root());
  py::object r = call_entry(fn_, *e, py::make_tuple(1, "a"));
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 1, "a"))) << py::repr(r).cast<std::string>();
  // Defaults come from the original function (they were bound into the frame).
  py::object with_default = define("def g(x, y=10):\n    return ('original', x, y)\n", "g");
  py::object compiled_g = define("def g(x, y=99):\n    return ('compiled', x, y)\n", "g");
  Shared<CacheEntry> eg =
      make_entry(code_of(with_default), compiled_g.attr("__code__"), new_root());
  r = call_entry(with_default, *eg, py::make_tuple(1));
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 1, 10))) << py::repr(r).cast<std::string>();
  // The same entry runs again (a cached function object is reused).
  r = call_entry(with_default, *eg, py::make_tuple(2, 3));
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 2, 3)));
}

TEST_F(CacheEntryTest, RunPassesKeywordOnlyVarargsAndVarkw) {
  const char* shape =
      "def g(a, /, b, *args, c, d=4, **kw):\n    return (%s, a, b, args, c, d, kw)\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, shape, "'original'");
  py::object original = define(buf, "g");
  std::snprintf(buf, sizeof buf, shape, "'compiled'");
  py::object compiled = define(buf, "g");
  Shared<CacheEntry> e = make_entry(code_of(original), compiled.attr("__code__"), new_root());

  py::dict kwargs;
  kwargs["c"] = 5;
  kwargs["e"] = 6;
  py::object r = call_entry(original, *e, py::make_tuple(1, 2, 3, 4), kwargs);
  py::dict kw;
  kw["e"] = 6;
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 1, 2, py::make_tuple(3, 4), 5, 4, kw)))
      << py::repr(r).cast<std::string>();

  // A positional-only name passed by keyword lands in **kw, as in the original.
  py::dict kwargs2;
  kwargs2["c"] = 7;
  kwargs2["a"] = 9;
  r = call_entry(original, *e, py::make_tuple(1, 2), kwargs2);
  py::dict kw2;
  kw2["a"] = 9;
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 1, 2, py::tuple(), 7, 4, kw2)))
      << py::repr(r).cast<std::string>();
}

TEST_F(CacheEntryTest, RunHandsOverTheClosure) {
  py::object original = run_source(
      "def outer(z):\n    def inner(a):\n        return ('original', a, z)\n    return inner\n")
      ["outer"](3);
  py::object compiled_outer = run_source(
      "def outer(z):\n    def inner(a):\n        return ('compiled', a, z)\n    return inner\n")
      ["outer"];
  py::object compiled_code = compiled_outer(0).attr("__code__");
  Shared<CacheEntry> e = make_entry(code_of(original), compiled_code, new_root());
  py::object r = call_entry(original, *e, py::make_tuple(1));
  EXPECT_TRUE(r.equal(py::make_tuple("compiled", 1, 3))) << py::repr(r).cast<std::string>();
}

TEST_F(CacheEntryTest, RunPropagatesExceptions) {
  py::object compiled = define("def f(x, y):\n    raise ValueError(f'bad {x}')\n", "f");
  Shared<CacheEntry> e = make_entry(code_, compiled.attr("__code__"), new_root());
  try {
    call_entry(fn_, *e, py::make_tuple(1, 2));
    FAIL() << "the cached code's exception must reach the caller";
  } catch (py::error_already_set& ex) {
    EXPECT_TRUE(ex.matches(PyExc_ValueError));
    EXPECT_EQ(py::str(ex.value()).cast<std::string>(), "bad 1");
  }
}

// --- check_code_compatible --------------------------------------------------------

class CompatibleTest : public ::testing::Test {
 protected:
  // Whether the code of `candidate` may run in place of `original`'s; on
  // rejection the error's text is kept in error_.
  bool compatible(const char* original_src, const char* candidate_src, const char* name = "f") {
    py::object original = define(original_src, name);
    py::object candidate = define(candidate_src, name);
    return compatible_code(code_of(original), candidate.attr("__code__"));
  }
  bool compatible_code(PyCodeObject* original, const py::handle& code) {
    const bool ok = check_code_compatible(original, code.ptr());
    EXPECT_EQ(ok, PyErr_Occurred() == nullptr) << "an error is set exactly when rejected";
    error_ = take_error();
    return ok;
  }
  std::string error_;
};

TEST_F(CompatibleTest, AcceptsTheSameLayout) {
  EXPECT_TRUE(
      compatible("def f(x, y):\n    return x\n", "def f(x, y):\n    t = x * 2\n    return t\n"));
  EXPECT_TRUE(compatible("def f(a, /, b, *args, c, **kw):\n    pass\n",
                         "def f(a, /, b, *args, c, **kw):\n    return a, b, args, c, kw\n"));
  // Positional parameter names may differ (the frame passes them by position).
  EXPECT_TRUE(compatible("def f(x, y):\n    return x\n", "def f(p, q):\n    return p\n"));
  py::object fn = define("def f(x):\n    return x\n", "f");
  EXPECT_TRUE(compatible_code(code_of(fn), fn.attr("__code__")));
}

TEST_F(CompatibleTest, RejectsANonCode) {
  py::object fn = define("def f(x):\n    return x\n", "f");
  EXPECT_FALSE(compatible_code(code_of(fn), py::int_(3)));
  EXPECT_EQ(error_, "TypeError: GuardedCode.code must be a code object, got int");
}

TEST_F(CompatibleTest, RejectsDifferentArgumentCounts) {
  EXPECT_FALSE(compatible("def f(x, y):\n    pass\n", "def f(x):\n    pass\n"));
  EXPECT_EQ(error_,
            "ValueError: compiled code for f must keep the original's arguments: expected 2 "
            "positional (0 positional-only), 0 keyword-only, *args=0, **kwargs=0; got 1 (0), 0, "
            "0, 0");
}

TEST_F(CompatibleTest, RejectsDifferentPositionalOnlyCount) {
  EXPECT_FALSE(compatible("def f(x, /, y):\n    pass\n", "def f(x, y):\n    pass\n"));
  EXPECT_NE(error_.find("expected 2 positional (1 positional-only)"), std::string::npos) << error_;
  EXPECT_NE(error_.find("got 2 (0)"), std::string::npos) << error_;
}

TEST_F(CompatibleTest, RejectsDifferentVarargsOrVarkw) {
  EXPECT_FALSE(compatible("def f(x, *args):\n    pass\n", "def f(x):\n    pass\n"));
  EXPECT_NE(error_.find("*args=1, **kwargs=0; got 1 (0), 0, 0, 0"), std::string::npos) << error_;
  EXPECT_FALSE(compatible("def f(x):\n    pass\n", "def f(x, **kw):\n    pass\n"));
  EXPECT_NE(error_.find("*args=0, **kwargs=0; got 1 (0), 0, 0, 1"), std::string::npos) << error_;
}

TEST_F(CompatibleTest, RejectsDifferentKeywordOnlyArguments) {
  EXPECT_FALSE(compatible("def f(*, a):\n    pass\n", "def f(*, a, b):\n    pass\n"));
  EXPECT_NE(error_.find("1 keyword-only"), std::string::npos) << error_;
  EXPECT_FALSE(compatible("def f(x, *, a):\n    pass\n", "def f(x, *, b):\n    pass\n"));
  EXPECT_EQ(error_, "ValueError: compiled code for f must keep the keyword-only argument names");
}

TEST_F(CompatibleTest, RejectsDifferentFreeVariables) {
  py::object inner = run_source(
      "def outer(z):\n    def inner(a):\n        return a + z\n    return inner\n")["outer"](1);
  py::object plain = define("def inner(a):\n    return a\n", "inner");
  EXPECT_FALSE(compatible_code(code_of(inner), plain.attr("__code__")));
  EXPECT_EQ(error_,
            "ValueError: compiled code for outer.<locals>.inner must have the original's 1 free "
            "variables, got 0");
}

TEST_F(CompatibleTest, RejectsFunctionVersusModuleCode) {
  py::object fn = define("def f():\n    pass\n", "f");
  py::object module_code =
      py::module_::import("builtins").attr("compile")("x = 1\n", "<m>", "exec");
  EXPECT_FALSE(compatible_code(code_of(fn), module_code));
  EXPECT_EQ(error_,
            "ValueError: compiled code for f must be a function code object like the original");
  EXPECT_FALSE(
      compatible_code(reinterpret_cast<PyCodeObject*>(module_code.ptr()), fn.attr("__code__")));
  EXPECT_EQ(error_,
            "ValueError: compiled code for <module> must be a module or class-body code object "
            "like the original");
}

}  // namespace
}  // namespace framecache

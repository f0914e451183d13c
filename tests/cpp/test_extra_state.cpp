// ExtraState: creation on a real code object, lookup, defaults, the entry
// list and its generation, reset / reset_all / code death freeing the state
// and what it holds, and skip prefixes.
#include <gtest/gtest.h>

#include "framecache/cache_entry.h"
#include "framecache/cpython.h"
#include "framecache/extra_state.h"
#include "framecache/runtime_config.h"
#include "support.h"

namespace framecache {
namespace {

namespace py = pybind11;
using fctest::code_of;
using fctest::define;
using fctest::run_source;

constexpr const char* kGuardClass = R"(
class Guard:
    def __init__(self, ok=True):
        self.ok = ok
    def check(self, f_locals):
        return self.ok
)";

py::object weakref(const py::handle& obj) {
  return py::module_::import("weakref").attr("ref")(obj);
}
bool dead(const py::object& ref) { return ref().is_none(); }
void collect() { py::module_::import("gc").attr("collect")(); }

class ExtraStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(extra_state_init(), 0);
    // Free the garbage of earlier tests first: a dead code object's state
    // leaving during a test would throw extra_state_count() off.
    collect();
    fn_ = define("def f(a, b):\n    return a + b\n", "f");
    code_ = code_of(fn_);
    guard_class_ = run_source(kGuardClass)["Guard"];
  }
  void TearDown() override {
    extra_state_reset(code_);
    extra_state_set_skip_prefixes({});
  }
  // An entry for `code_` running a copy of its code, guarded by `gm`.
  Shared<CacheEntry> make_entry(const py::handle& gm, const std::string& annotation = "") {
    py::object copy = fn_.attr("__code__").attr("replace")();
    return Shared<CacheEntry>(new CacheEntry(code_, copy.ptr(), gm.ptr(), Py_None, annotation));
  }
  py::object new_guard() { return guard_class_(); }

  py::object fn_;
  PyCodeObject* code_ = nullptr;
  py::object guard_class_;
};

TEST_F(ExtraStateTest, EnsureCreatesOneStatePerCodeWithDefaults) {
  const size_t before = extra_state_count();
  EXPECT_EQ(extra_state_lookup(code_), nullptr);
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr) << fctest::take_error();
  EXPECT_EQ(extra_state_lookup(code_), state);
  EXPECT_EQ(extra_state_ensure(code_), state);
  EXPECT_EQ(extra_state_count(), before + 1);

  EXPECT_EQ(state->code(), code_);
  EXPECT_TRUE(state->attached());
  EXPECT_EQ(state->refcount(), 1) << "only the co_extra slot owns a fresh state";
  EXPECT_TRUE(state->strategy == FrameExecStrategy{});
  EXPECT_EQ(state->compiles, 0);
  EXPECT_FALSE(state->limit_warned);
  EXPECT_TRUE(state->entries().empty());
  EXPECT_EQ(state->generation(), 0u);
  ASSERT_NE(state->frame_state(), nullptr);
  EXPECT_TRUE(PyDict_CheckExact(state->frame_state()));
  EXPECT_EQ(PyDict_Size(state->frame_state()), 0);
}

TEST_F(ExtraStateTest, StatesAreSeparatePerCodeObject) {
  py::object g = define("def g(a, b):\n    return a * b\n", "g");
  ExtraState* sf = extra_state_ensure(code_);
  ExtraState* sg = extra_state_ensure(code_of(g));
  ASSERT_NE(sf, nullptr);
  ASSERT_NE(sg, nullptr);
  EXPECT_NE(sf, sg);
  sf->strategy.cur_action = FrameAction::SKIP;
  EXPECT_EQ(sg->strategy.cur_action, FrameAction::DEFAULT);
  extra_state_reset(code_of(g));
}

TEST_F(ExtraStateTest, FrameStatePersistsAcrossEntryChanges) {
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr);
  py::dict fs = py::reinterpret_borrow<py::dict>(state->frame_state());
  fs["x"] = py::make_tuple(1, 2);
  state->add_front(make_entry(new_guard()));
  state->clear_entries();
  ExtraState* again = extra_state_ensure(code_);
  EXPECT_EQ(again->frame_state(), fs.ptr());
  py::object x = py::reinterpret_borrow<py::dict>(again->frame_state())["x"];
  EXPECT_TRUE(x.equal(py::make_tuple(1, 2)));
}

TEST_F(ExtraStateTest, AddFrontMoveToFrontClearAndGeneration) {
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr);
  Shared<CacheEntry> a = make_entry(new_guard(), "a");
  Shared<CacheEntry> b = make_entry(new_guard(), "b");
  Shared<CacheEntry> c = make_entry(new_guard(), "c");
  auto order = [&] {
    std::string s;
    for (const auto& e : state->entries()) s += e->trace_annotation();
    return s;
  };

  state->add_front(a);
  state->add_front(b);
  state->add_front(c);
  EXPECT_EQ(order(), "cba") << "newest first";
  EXPECT_EQ(state->generation(), 3u);
  EXPECT_EQ(a->refcount(), 2) << "held by the list and by this test";

  state->move_to_front(a.get());
  EXPECT_EQ(order(), "acb");
  EXPECT_EQ(state->generation(), 4u);

  state->move_to_front(a.get());  // already first: no change, no new generation
  EXPECT_EQ(order(), "acb");
  EXPECT_EQ(state->generation(), 4u);

  Shared<CacheEntry> stranger = make_entry(new_guard(), "z");
  state->move_to_front(stranger.get());  // not in the list: ignored
  EXPECT_EQ(order(), "acb");
  EXPECT_EQ(state->generation(), 4u);

  state->move_to_front(b.get());  // from the back
  EXPECT_EQ(order(), "bac");
  EXPECT_EQ(state->generation(), 5u);

  state->clear_entries();
  EXPECT_TRUE(state->entries().empty());
  EXPECT_EQ(state->generation(), 6u);
  EXPECT_EQ(a->refcount(), 1);
  EXPECT_EQ(b->refcount(), 1);
  EXPECT_EQ(c->refcount(), 1);
}

TEST_F(ExtraStateTest, ResetFreesTheStateAndDropsEntries) {
  const size_t before = extra_state_count();
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr);
  py::object gm_ref;
  {
    py::object gm = new_guard();
    gm_ref = weakref(gm);
    state->add_front(make_entry(gm));
  }
  state->strategy = {FrameAction::SKIP, FrameAction::RUN_ONLY};
  EXPECT_FALSE(dead(gm_ref)) << "the entry keeps its guard manager alive";
  EXPECT_EQ(extra_state_count(), before + 1);

  extra_state_reset(code_);
  EXPECT_TRUE(dead(gm_ref)) << "reset_code must free the entries and their guard managers";
  EXPECT_EQ(extra_state_lookup(code_), nullptr);
  EXPECT_EQ(extra_state_count(), before);
  EXPECT_FALSE(PyErr_Occurred());

  // A later ensure starts from scratch: default strategy, empty frame_state.
  ExtraState* fresh = extra_state_ensure(code_);
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(fresh->strategy == FrameExecStrategy{});
  EXPECT_TRUE(fresh->entries().empty());
  EXPECT_EQ(PyDict_Size(fresh->frame_state()), 0);
}

TEST_F(ExtraStateTest, ResetWhileHeldDetachesAndClears) {
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr);
  py::object gm = new_guard();
  py::object gm_ref = weakref(gm);
  state->add_front(make_entry(gm));
  gm = py::object();
  Shared<ExtraState> hold(state);  // what the hook holds while it works on a frame
  EXPECT_EQ(state->refcount(), 2);

  extra_state_reset(code_);
  EXPECT_FALSE(hold->attached());
  EXPECT_TRUE(hold->entries().empty());
  EXPECT_TRUE(dead(gm_ref));
  EXPECT_EQ(hold->refcount(), 1) << "the slot's reference was dropped exactly once";
  EXPECT_EQ(extra_state_lookup(code_), nullptr);

  extra_state_reset(code_);  // nothing left to reset: a no-op
  EXPECT_EQ(hold->refcount(), 1);
  EXPECT_FALSE(PyErr_Occurred());
}

TEST_F(ExtraStateTest, ResetWithoutStateIsNoop) {
  const size_t before = extra_state_count();
  extra_state_reset(code_);
  EXPECT_EQ(extra_state_lookup(code_), nullptr);
  EXPECT_EQ(extra_state_count(), before);
  EXPECT_FALSE(PyErr_Occurred());
}

TEST_F(ExtraStateTest, ResetAllFreesEveryStateAndZeroesAccumulatedCompiles) {
  py::object g = define("def g(x):\n    return x\n", "g");
  py::object h = define("def h(*a, **k):\n    return a, k\n", "h");
  std::vector<py::object> refs;
  for (const py::object* fn : {&fn_, &g, &h}) {
    ExtraState* s = extra_state_ensure(code_of(*fn));
    ASSERT_NE(s, nullptr);
    py::object gm = new_guard();
    refs.push_back(weakref(gm));
    py::object copy = fn->attr("__code__").attr("replace")();
    s->add_front(
        Shared<CacheEntry>(new CacheEntry(code_of(*fn), copy.ptr(), gm.ptr(), Py_None, "")));
    s->compiles = 1;
  }
  runtime_config().accumulated_compiles = 3;
  ASSERT_GE(extra_state_count(), 3u);

  extra_state_reset_all();
  EXPECT_EQ(extra_state_count(), 0u);
  EXPECT_EQ(extra_state_lookup(code_), nullptr);
  EXPECT_EQ(extra_state_lookup(code_of(g)), nullptr);
  EXPECT_EQ(extra_state_lookup(code_of(h)), nullptr);
  for (const auto& r : refs) EXPECT_TRUE(dead(r));
  EXPECT_EQ(runtime_config().accumulated_compiles, 0);
}

TEST_F(ExtraStateTest, CodeDeathFreesTheSlotAndEverythingInIt) {
  const size_t before = extra_state_count();
  py::object code_ref, gm_ref;
  {
    py::object fn = define("def doomed(a):\n    return a\n", "doomed");
    ExtraState* s = extra_state_ensure(code_of(fn));
    ASSERT_NE(s, nullptr);
    py::object gm = new_guard();
    gm_ref = weakref(gm);
    code_ref = weakref(fn.attr("__code__"));
    py::object copy = fn.attr("__code__").attr("replace")();
    s->add_front(
        Shared<CacheEntry>(new CacheEntry(code_of(fn), copy.ptr(), gm.ptr(), Py_None, "")));
    EXPECT_EQ(extra_state_count(), before + 1);
  }
  // The function and its namespace (a cycle through __globals__) are gone,
  // so the code object is too; its co_extra freefunc must have released the
  // state, its entry and the guards.
  collect();
  EXPECT_TRUE(dead(code_ref));
  EXPECT_TRUE(dead(gm_ref));
  EXPECT_EQ(extra_state_count(), before);
}

TEST_F(ExtraStateTest, CodeDeathWhileHeldLeavesADetachedState) {
  py::object code_ref, gm_ref;
  Shared<ExtraState> hold;
  {
    py::object fn = define("def doomed(a):\n    return a\n", "doomed");
    ExtraState* s = extra_state_ensure(code_of(fn));
    ASSERT_NE(s, nullptr);
    hold = Shared<ExtraState>(s);
    py::object gm = new_guard();
    gm_ref = weakref(gm);
    code_ref = weakref(fn.attr("__code__"));
    py::object copy = fn.attr("__code__").attr("replace")();
    s->add_front(
        Shared<CacheEntry>(new CacheEntry(code_of(fn), copy.ptr(), gm.ptr(), Py_None, "")));
  }
  collect();
  ASSERT_TRUE(dead(code_ref));
  EXPECT_FALSE(hold->attached());
  EXPECT_EQ(hold->refcount(), 1);
  EXPECT_FALSE(dead(gm_ref)) << "the holder's reference keeps the entries until it lets go";
  hold.reset();
  EXPECT_TRUE(dead(gm_ref));
}

TEST_F(ExtraStateTest, OtherCoExtraUsersDoNotDisturbTheState) {
  static int freed = 0;
  freed = 0;
  const Py_ssize_t other = cpy::request_code_extra_index([](void*) { ++freed; });
  ASSERT_GE(other, 0);
  ExtraState* s = extra_state_ensure(code_);
  ASSERT_NE(s, nullptr);
  static int token = 7;
  ASSERT_EQ(cpy::code_set_extra(code_, other, &token), 0);
  EXPECT_EQ(extra_state_lookup(code_), s);
  EXPECT_EQ(cpy::code_get_extra(code_, other), &token);
  extra_state_reset(code_);
  EXPECT_EQ(cpy::code_get_extra(code_, other), &token) << "reset must only clear framecache's slot";
  EXPECT_EQ(freed, 0);
  ASSERT_EQ(cpy::code_set_extra(code_, other, nullptr), 0);
}

TEST_F(ExtraStateTest, SkipPrefixesStartCodeAsSkip) {
  extra_state_set_skip_prefixes({"/fctest/skipped/"});
  py::object inside = define("def f(x):\n    return x\n", "f", "/fctest/skipped/mod.py");
  py::object outside = define("def f(x):\n    return x\n", "f", "/fctest/other/mod.py");
  py::object nested = define("def f(x):\n    return x\n", "f", "/home/fctest/skipped/mod.py");

  ExtraState* si = extra_state_ensure(code_of(inside));
  ExtraState* so = extra_state_ensure(code_of(outside));
  ExtraState* sn = extra_state_ensure(code_of(nested));
  ASSERT_TRUE(si && so && sn);
  EXPECT_TRUE(si->strategy == (FrameExecStrategy{FrameAction::SKIP, FrameAction::DEFAULT}));
  EXPECT_TRUE(so->strategy == FrameExecStrategy{});
  EXPECT_TRUE(sn->strategy == FrameExecStrategy{}) << "a prefix matches at the start only";

  // Prefixes apply to states created afterwards; existing states keep theirs.
  extra_state_set_skip_prefixes({});
  EXPECT_EQ(extra_state_lookup(code_of(inside))->strategy.cur_action, FrameAction::SKIP);
  extra_state_reset(code_of(inside));
  ExtraState* again = extra_state_ensure(code_of(inside));
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->strategy.cur_action, FrameAction::DEFAULT);

  for (const py::object* fn : {&inside, &outside, &nested}) extra_state_reset(code_of(*fn));
}

TEST_F(ExtraStateTest, SkipPrefixesAcceptSeveralPrefixes) {
  extra_state_set_skip_prefixes({"/nowhere/", "/fctest/b/"});
  py::object fn = define("def f(x):\n    return x\n", "f", "/fctest/b/x.py");
  ExtraState* s = extra_state_ensure(code_of(fn));
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->strategy.cur_action, FrameAction::SKIP);
  EXPECT_EQ(s->strategy.recursive_action, FrameAction::DEFAULT);
  extra_state_reset(code_of(fn));
}

}  // namespace
}  // namespace framecache

namespace framecache {
namespace {

// Options tags: a strategy set under one tag decides for that tag only; tag 0
// (and any tag without its own) uses the code's own strategy.
TEST_F(ExtraStateTest, StrategiesAreKeptPerOptionsTag) {
  ExtraState* state = extra_state_ensure(code_);
  ASSERT_NE(state, nullptr) << fctest::take_error();
  const FrameExecStrategy skip{FrameAction::SKIP, FrameAction::DEFAULT};
  const FrameExecStrategy run_only{FrameAction::RUN_ONLY, FrameAction::SKIP};
  state->set_strategy(7, skip);
  EXPECT_EQ(state->strategy_for(7), skip);
  EXPECT_EQ(state->strategy_for(8), FrameExecStrategy{});
  EXPECT_EQ(state->strategy_for(0), FrameExecStrategy{});
  state->set_strategy(0, run_only);
  EXPECT_EQ(state->strategy, run_only);
  EXPECT_EQ(state->strategy_for(8), run_only);
  EXPECT_EQ(state->strategy_for(7), skip);
  state->set_strategy(7, run_only);
  EXPECT_EQ(state->strategy_for(7), run_only);
}

}  // namespace
}  // namespace framecache

// The guard tree core: RootGuardManager::local(), check_root() on dict and
// fast-locals FrameInputs, check_root_verbose() failure strings, leaf order,
// fail-fast reordering of accessors, mutation during a check, the relational
// reset hook, fatal errors, and the Python RootGuardManager class.
#include <gtest/gtest.h>
#include <pybind11/stl.h>

#include <functional>
#include <memory>
#include <stdexcept>

#include "framecache/guards/accessors_frame.h"
#include "framecache/guards/leaf_guards_identity.h"
#include "framecache/guards/root_guard_manager.h"
#include "support.h"

namespace framecache::guards {
namespace {

namespace py = pybind11;
using fctest::new_root;
using fctest::take_error;

PyObject* int_type() { return reinterpret_cast<PyObject*>(&PyLong_Type); }

// A leaf that logs its name each time it runs, answers `pass`, and may run
// `during` inside its check (to act on the tree mid-check).
class ScriptedLeaf final : public LeafGuard {
 public:
  ScriptedLeaf(std::string name, std::vector<std::string>* log, bool pass = true)
      : name_(std::move(name)), log_(log), pass(pass) {}
  bool check(PyObject*) override {
    log_->push_back(name_);
    if (during) during();
    return pass;
  }
  std::string explain(PyObject*) override { return name_ + " said no"; }
  std::string describe() const override { return "SCRIPTED(" + name_ + ")"; }
  const char* kind() const override { return "SCRIPTED"; }

 private:
  std::string name_;
  std::vector<std::string>* log_;

 public:
  bool pass;
  std::function<void()> during;
};

// A relational guard that counts its resets.
class CountingRelational final : public RelationalGuard {
 public:
  bool check(PyObject*) override {
    ++checks;
    return true;
  }
  std::string explain(PyObject*) override { return "never fails"; }
  std::string describe() const override { return "COUNTING_RELATIONAL"; }
  const char* kind() const override { return "COUNTING_RELATIONAL"; }
  void reset_state() override { ++resets; }
  int checks = 0;
  int resets = 0;
};

ScriptedLeaf& add_scripted(GuardManager& node, const std::string& name,
                           std::vector<std::string>* log, bool pass = true) {
  return static_cast<ScriptedLeaf&>(node.add_leaf(std::make_unique<ScriptedLeaf>(name, log, pass)));
}

FrameInputs dict_inputs(const py::dict& locals) {
  FrameInputs in;
  in.locals = locals.ptr();
  return in;
}

std::vector<std::string> accessor_order(const GuardManager& node) {
  std::vector<std::string> out;
  for (const auto& acc : node.accessors()) out.push_back(acc->describe());
  return out;
}

// --- local() -----------------------------------------------------------------

TEST(RootGuardManager, LocalReturnsOneNodePerName) {
  RootGuardManager root;
  EXPECT_EQ(root.local_names_version(), 0u);
  GuardManager& x = root.local("x");
  EXPECT_EQ(&root.local("x"), &x) << "the same name gives the same node";
  EXPECT_EQ(x.source(), "L['x']");
  EXPECT_EQ(&x.root(), &root);
  EXPECT_EQ(root.local_names_version(), 1u);
  GuardManager& y = root.local("y");
  EXPECT_NE(&y, &x);
  EXPECT_EQ(root.local_names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(root.local_names_version(), 2u);
  root.local("x");
  EXPECT_EQ(root.local_names_version(), 2u) << "no new name, no new version";
  EXPECT_EQ(accessor_order(root), (std::vector<std::string>{"FrameLocal('x')", "FrameLocal('y')"}));
  EXPECT_EQ(root.num_guards(), 0u);
}

// --- check_root on a dict --------------------------------------------------------

TEST(RootGuardManager, EmptyRootAlwaysPasses) {
  RootGuardManager root;
  py::dict locals;
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 1);
  GuardDebugInfo info = root.check_root_verbose(dict_inputs(locals));
  EXPECT_TRUE(info.result);
  EXPECT_TRUE(info.failures.empty());
  EXPECT_EQ(info.num_guards_executed, 0);
}

TEST(RootGuardManager, TypeMatchOnADict) {
  RootGuardManager root;
  root.local("x").add_leaf(std::make_unique<TypeMatch>(int_type()));
  EXPECT_EQ(root.num_guards(), 1u);
  py::dict ok, wrong, subclass, missing;
  ok["x"] = 1;
  wrong["x"] = "a";
  subclass["x"] = true;  // bool is an int subclass: TYPE_MATCH is exact
  missing["y"] = 1;
  EXPECT_EQ(root.check_root(dict_inputs(ok)), 1);
  EXPECT_EQ(root.check_root(dict_inputs(wrong)), 0);
  EXPECT_EQ(root.check_root(dict_inputs(subclass)), 0);
  EXPECT_EQ(root.check_root(dict_inputs(missing)), 0);
  EXPECT_FALSE(PyErr_Occurred()) << "a failing guard leaves no exception behind";
}

TEST(RootGuardManager, VerboseFailureStrings) {
  RootGuardManager root;
  root.local("x").add_leaf(std::make_unique<TypeMatch>(int_type()));
  root.local("y").add_leaf(std::make_unique<SingletonMatch>(SingletonMatch::Which::kNone));
  py::dict bad;
  bad["x"] = "a";
  bad["y"] = 3;
  GuardDebugInfo info = root.check_root_verbose(dict_inputs(bad));
  EXPECT_FALSE(info.result);
  EXPECT_EQ(info.failures, (std::vector<std::string>{"L['x']: expected type int, got str",
                                                     "L['y']: expected None, got 3"}));
  EXPECT_EQ(info.num_guards_executed, 2);

  py::dict good;
  good["x"] = 1;
  good["y"] = py::none();
  info = root.check_root_verbose(dict_inputs(good));
  EXPECT_TRUE(info.result);
  EXPECT_TRUE(info.failures.empty());
  EXPECT_EQ(info.num_guards_executed, 2);

  py::dict missing;
  missing["y"] = py::none();
  info = root.check_root_verbose(dict_inputs(missing));
  EXPECT_FALSE(info.result);
  ASSERT_EQ(info.failures.size(), 1u);
  EXPECT_EQ(info.failures[0].rfind("L['x']: local 'x' is not bound", 0), 0u) << info.failures[0];
  EXPECT_FALSE(PyErr_Occurred());
}

// --- check_root on fast locals ---------------------------------------------------

TEST(RootGuardManager, FastLocalsThroughASlotMap) {
  RootGuardManager root;
  root.local("a").add_leaf(std::make_unique<TypeMatch>(int_type()));
  root.local("b").add_leaf(std::make_unique<SingletonMatch>(SingletonMatch::Which::kNone));
  py::int_ one(1);
  py::str text("t");
  // Frame layout: slot 0 = b, slot 1 = a (the root's ids are a=0, b=1).
  PyObject* fast[2] = {Py_None, one.ptr()};
  const int32_t slots[2] = {1, 0};
  FrameInputs in;
  in.fast = fast;
  in.slots = slots;
  in.nslots = 2;
  EXPECT_EQ(root.check_root(in), 1);
  fast[1] = text.ptr();
  EXPECT_EQ(root.check_root(in), 0);
  GuardDebugInfo info = root.check_root_verbose(in);
  EXPECT_EQ(info.failures, (std::vector<std::string>{"L['a']: expected type int, got str"}));
  // An unbound slot (null) or a name the code does not have fails.
  fast[1] = nullptr;
  EXPECT_EQ(root.check_root(in), 0);
  const int32_t absent[2] = {kAbsent, 0};
  fast[1] = one.ptr();
  in.slots = absent;
  EXPECT_EQ(root.check_root(in), 0);
  EXPECT_FALSE(PyErr_Occurred());
}

TEST(RootGuardManager, FastLocalsReadFreeVariablesFromTheClosure) {
  RootGuardManager root;
  root.local("z").add_leaf(std::make_unique<TypeMatch>(int_type()));
  py::object cell_int = py::reinterpret_steal<py::object>(PyCell_New(py::int_(5).ptr()));
  py::object cell_str = py::reinterpret_steal<py::object>(PyCell_New(py::str("s").ptr()));
  py::object empty_cell = py::reinterpret_steal<py::object>(PyCell_New(nullptr));
  py::tuple closure = py::make_tuple(cell_str, cell_int, empty_cell);
  const int32_t second[1] = {kClosureBase - 1};
  FrameInputs in;
  PyObject* fast[1] = {nullptr};
  in.fast = fast;
  in.slots = second;
  in.nslots = 1;
  in.closure = closure.ptr();
  EXPECT_EQ(root.check_root(in), 1);
  const int32_t first[1] = {kClosureBase};
  in.slots = first;
  EXPECT_EQ(root.check_root(in), 0);
  const int32_t third[1] = {kClosureBase - 2};  // an empty cell
  in.slots = third;
  EXPECT_EQ(root.check_root(in), 0);
  const int32_t beyond[1] = {kClosureBase - 7};  // past the closure tuple
  in.slots = beyond;
  EXPECT_EQ(root.check_root(in), 0);
  EXPECT_FALSE(PyErr_Occurred());
}

// --- order --------------------------------------------------------------------------

TEST(GuardManager, LeavesRunInOrderAndStopAtTheFirstFailure) {
  RootGuardManager root;
  std::vector<std::string> log;
  GuardManager& x = root.local("x");
  add_scripted(x, "A", &log);
  add_scripted(x, "B", &log, false);
  add_scripted(x, "C", &log);
  py::dict locals;
  locals["x"] = 1;
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  EXPECT_EQ(log, (std::vector<std::string>{"A", "B"}));

  // The verbose path runs every leaf and reports each failure.
  log.clear();
  GuardDebugInfo info = root.check_root_verbose(dict_inputs(locals));
  EXPECT_EQ(log, (std::vector<std::string>{"A", "B", "C"}));
  EXPECT_EQ(info.failures, (std::vector<std::string>{"L['x']: B said no"}));
  EXPECT_EQ(info.num_guards_executed, 3);
}

TEST(GuardManager, LeafOrderNeverChanges) {
  RootGuardManager root;
  std::vector<std::string> log;
  GuardManager& x = root.local("x");
  add_scripted(x, "first", &log);
  add_scripted(x, "second", &log, false);
  py::dict locals;
  locals["x"] = 1;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  ASSERT_EQ(x.leaves().size(), 2u);
  EXPECT_EQ(x.leaves()[0]->describe(), "SCRIPTED(first)");
  EXPECT_EQ(x.leaves()[1]->describe(), "SCRIPTED(second)");
  EXPECT_EQ(log.size(), 10u);
  for (size_t i = 0; i < log.size(); i += 2) EXPECT_EQ(log[i], "first");
}

TEST(GuardManager, AccessorsReorderFailFast) {
  RootGuardManager root;
  std::vector<std::string> log;
  add_scripted(root.local("a"), "a", &log);
  ScriptedLeaf& b = add_scripted(root.local("b"), "b", &log);
  ScriptedLeaf& c = add_scripted(root.local("c"), "c", &log, false);
  py::dict locals;
  locals["a"] = 1;
  locals["b"] = 2;
  locals["c"] = 3;

  EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b", "c"}));
  // The failing accessor moves ahead of those that never failed...
  EXPECT_EQ(accessor_order(root),
            (std::vector<std::string>{"FrameLocal('c')", "FrameLocal('a')", "FrameLocal('b')"}));
  EXPECT_EQ(root.accessors()[0]->fail_count(), 1u);

  // ...so the next failing check stops at once.
  log.clear();
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  EXPECT_EQ(log, (std::vector<std::string>{"c"}));
  EXPECT_EQ(root.accessors()[0]->fail_count(), 2u);

  // Now b fails instead: it passes a (0 failures) but not c (2 failures).
  c.pass = true;
  b.pass = false;
  log.clear();
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  EXPECT_EQ(log, (std::vector<std::string>{"c", "a", "b"}));
  EXPECT_EQ(accessor_order(root),
            (std::vector<std::string>{"FrameLocal('c')", "FrameLocal('b')", "FrameLocal('a')"}));

  // Reordering never changes the answer, and a passing check does not reorder.
  b.pass = true;
  log.clear();
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 1);
  EXPECT_EQ(log, (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(accessor_order(root),
            (std::vector<std::string>{"FrameLocal('c')", "FrameLocal('b')", "FrameLocal('a')"}));
  // local() still finds each node by name after the reordering.
  EXPECT_EQ(root.local("a").source(), "L['a']");
  EXPECT_EQ(root.local_names(), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(GuardManager, NoReorderingWhileAnotherCheckIsInProgress) {
  RootGuardManager root;
  std::vector<std::string> log;
  ScriptedLeaf& a = add_scripted(root.local("a"), "a", &log);
  add_scripted(root.local("b"), "b", &log, false);
  py::dict locals;
  locals["a"] = 1;
  locals["b"] = 2;
  const FrameInputs in = dict_inputs(locals);
  std::vector<std::string> order_after_inner;
  int active_inside = 0;
  bool nested = false;
  a.during = [&] {
    if (nested) return;
    nested = true;
    active_inside = root.active_checks();
    EXPECT_EQ(root.check_root(in), 0);  // a second check of the same tree
    order_after_inner = accessor_order(root);
  };
  EXPECT_EQ(root.check_root(in), 0);
  EXPECT_EQ(active_inside, 1);
  EXPECT_EQ(root.active_checks(), 0);
  // The inner check saw b fail but did not reorder under the outer walk.
  EXPECT_EQ(order_after_inner, (std::vector<std::string>{"FrameLocal('a')", "FrameLocal('b')"}));
  // The outer (sole) check did, once it was alone again.
  EXPECT_EQ(accessor_order(root), (std::vector<std::string>{"FrameLocal('b')", "FrameLocal('a')"}));
}

// --- mutation during a check -----------------------------------------------------------

TEST(GuardManager, MutationDuringACheckIsRejected) {
  RootGuardManager root;
  std::vector<std::string> log;
  ScriptedLeaf& a = add_scripted(root.local("a"), "a", &log);
  py::dict locals;
  locals["a"] = 1;
  std::vector<std::string> errors;
  GuardManager* existing = nullptr;
  a.during = [&] {
    auto attempt = [&](const std::function<void()>& fn) {
      try {
        fn();
        errors.push_back("");
      } catch (const std::runtime_error& e) {
        errors.push_back(e.what());
      }
    };
    attempt([&] { root.local("new_name"); });
    attempt([&] { root.local("a").add_leaf(std::make_unique<TypeMatch>(int_type())); });
    attempt([&] { add_global(root, "g"); });
    attempt([&] { root.register_relational(nullptr); });
    existing = &root.local("a");  // finding an existing node is not a mutation
  };
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 1);
  const std::string msg = "cannot add guards to a guard tree while it is being checked";
  EXPECT_EQ(errors, (std::vector<std::string>{msg, msg, msg, msg}));
  EXPECT_EQ(existing, &root.local("a"));
  // Nothing was added.
  EXPECT_EQ(root.local_names(), (std::vector<std::string>{"a"}));
  EXPECT_EQ(root.num_guards(), 1u);
  EXPECT_EQ(root.accessors().size(), 1u);

  // After the check the tree can grow again.
  a.during = nullptr;
  root.local("new_name").add_leaf(std::make_unique<TypeMatch>(int_type()));
  EXPECT_EQ(root.num_guards(), 2u);
}

// --- relational guards ----------------------------------------------------------------

TEST(RootGuardManager, RelationalGuardsAreResetAfterEveryCheck) {
  RootGuardManager root;
  std::vector<std::string> log;
  auto owned = std::make_unique<CountingRelational>();
  CountingRelational* rel = owned.get();
  root.local("a").add_leaf(std::move(owned));
  root.register_relational(rel);
  ScriptedLeaf& b = add_scripted(root.local("b"), "b", &log);
  py::dict locals;
  locals["a"] = 1;
  locals["b"] = 2;

  EXPECT_EQ(root.check_root(dict_inputs(locals)), 1);
  EXPECT_EQ(rel->resets, 1);
  b.pass = false;
  EXPECT_EQ(root.check_root(dict_inputs(locals)), 0);
  EXPECT_EQ(rel->resets, 2) << "reset after a failing check too";
  root.check_root_verbose(dict_inputs(locals));
  EXPECT_EQ(rel->resets, 3) << "and after a verbose check";
  // A fatal error on the way out still resets.
  b.during = [] { PyErr_SetNone(PyExc_KeyboardInterrupt); };
  EXPECT_EQ(root.check_root(dict_inputs(locals)), -1);
  EXPECT_EQ(take_error(), "KeyboardInterrupt: ");
  EXPECT_EQ(rel->resets, 4);
}

// --- errors -------------------------------------------------------------------------

TEST(RootGuardManager, FatalErrorsPropagateOrdinaryOnesFail) {
  RootGuardManager root;
  std::vector<std::string> log;
  ScriptedLeaf& a = add_scripted(root.local("a"), "a", &log, false);
  py::dict locals;
  locals["a"] = 1;
  a.during = [] { PyErr_SetString(PyExc_SystemExit, "bye"); };
  EXPECT_EQ(root.check_root(dict_inputs(locals)), -1);
  EXPECT_EQ(take_error(), "SystemExit: bye");
  EXPECT_EQ(root.active_checks(), 0);
  // The verbose path stops at a fatal error and leaves it set.
  root.check_root_verbose(dict_inputs(locals));
  EXPECT_EQ(take_error(), "SystemExit: bye");
}

TEST(GuardContract, ConsumeCheckError) {
  EXPECT_FALSE(consume_check_error()) << "no error: nothing to consume";
  PyErr_SetString(PyExc_ValueError, "v");
  EXPECT_FALSE(consume_check_error());
  EXPECT_FALSE(PyErr_Occurred()) << "an ordinary Exception is cleared";
  PyErr_SetString(PyExc_AttributeError, "a");
  EXPECT_FALSE(consume_check_error());
  EXPECT_FALSE(PyErr_Occurred());
  PyErr_SetNone(PyExc_KeyboardInterrupt);
  EXPECT_TRUE(consume_check_error());
  EXPECT_TRUE(PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) << "a fatal one stays set";
  PyErr_Clear();
  PyErr_SetNone(PyExc_GeneratorExit);
  EXPECT_TRUE(consume_check_error());
  PyErr_Clear();
}

TEST(GuardContract, SafeReprAndTypeName) {
  EXPECT_EQ(safe_repr(nullptr), "<unbound>");
  EXPECT_EQ(safe_repr(py::int_(42).ptr()), "42");
  EXPECT_EQ(safe_repr(py::str("hi").ptr()), "'hi'");
  std::string long_text(200, 'x');
  std::string r = safe_repr(py::str(long_text).ptr(), 20);
  EXPECT_EQ(r.size(), 20u);
  EXPECT_EQ(r.substr(17), "...");
  py::object bad = fctest::run_source(
      "class Bad:\n    def __repr__(self):\n        raise RuntimeError('no')\n")["Bad"]();
  // A failing __repr__ falls back to the type name and keeps a pending error.
  PyErr_SetString(PyExc_ValueError, "pending");
  EXPECT_EQ(safe_repr(bad.ptr()), "<Bad object>");
  EXPECT_EQ(take_error(), "ValueError: pending");
  EXPECT_EQ(type_name(py::int_(1).ptr()), "int");
  EXPECT_EQ(type_name(nullptr), "<unbound>");
}

TEST(RootGuardManager, RenderTree) {
  RootGuardManager root;
  root.local("x").add_leaf(std::make_unique<TypeMatch>(int_type()));
  const std::string text = root.render_tree();
  EXPECT_EQ(text.rfind("RootGuardManager\n", 0), 0u) << text;
  EXPECT_NE(text.find("+- FrameLocal('x')"), std::string::npos) << text;
  EXPECT_NE(text.find("| TYPE_MATCH(int)"), std::string::npos) << text;
}

// --- the Python class -----------------------------------------------------------------

TEST(PyRootGuardManager, BuildCheckAndVerbose) {
  py::object root = new_root();
  py::object int_t = py::module_::import("builtins").attr("int");
  py::object node = root.attr("local")("x");
  py::object same = node.attr("type_match")(int_t);
  EXPECT_TRUE(same.is(node)) << "builder methods return the node for chaining";
  root.attr("local")("y").attr("equals_match")(3);
  EXPECT_EQ(py::repr(root).cast<std::string>(), "<RootGuardManager (2 guards)>");

  py::dict ok;
  ok["x"] = 1;
  ok["y"] = 3;
  EXPECT_TRUE(root.attr("check")(ok).cast<bool>());
  py::dict bad;
  bad["x"] = "a";
  bad["y"] = 3;
  EXPECT_FALSE(root.attr("check")(bad).cast<bool>());
  py::object info = root.attr("check_verbose")(bad);
  EXPECT_FALSE(info.attr("result").cast<bool>());
  EXPECT_EQ(info.attr("failures").cast<std::vector<std::string>>(),
            (std::vector<std::string>{"L['x']: expected type int, got str"}));
  py::list leaves = node.attr("leaf_guards")();
  ASSERT_EQ(py::len(leaves), 1u);
  using Leaf = std::pair<std::string, std::string>;
  EXPECT_EQ(leaves[0].cast<Leaf>(), Leaf("TYPE_MATCH", "TYPE_MATCH(int)"));
  EXPECT_EQ(root.attr("local_names")().cast<std::vector<std::string>>(),
            (std::vector<std::string>{"x", "y"}));
}

// Calls fn and returns the text of the Python exception it raised ("" if none).
std::string raised(const std::function<void()>& fn) {
  try {
    fn();
  } catch (py::error_already_set& e) {
    return std::string(Py_TYPE(e.value().ptr())->tp_name) + ": " +
           py::str(e.value()).cast<std::string>();
  }
  return "";
}

TEST(PyRootGuardManager, BadInputRaisesClearErrors) {
  py::object root = new_root();
  EXPECT_EQ(raised([&] { root.attr("local")(3); }),
            "TypeError: local() expects a str name, got int");
  EXPECT_EQ(raised([&] { root.attr("local")(""); }),
            "ValueError: local() expects a non-empty name");
  EXPECT_EQ(raised([&] { root.attr("check")(5); }),
            "TypeError: check() expects f_locals as a dict, got int");
  std::string e = raised([&] { root.attr("local")("x").attr("type_match")(3); });
  EXPECT_EQ(e.rfind("TypeError: type_match() expects a type, got int", 0), 0u) << e;
  e = raised([&] { root.attr("local")("x").attr("equals_match")(py::list()); });
  EXPECT_EQ(e.rfind("TypeError: equals_match() expects an immutable constant", 0), 0u) << e;
  EXPECT_EQ(raised([&] { fctest::fc().attr("guards").attr("RootGuardManager")(5); }),
            "TypeError: RootGuardManager(f_globals=...) expects a dict, got int");
  // A failed builder call adds nothing.
  EXPECT_EQ(root.attr("local")("x").attr("num_guards")().cast<int>(), 0);
}

}  // namespace
}  // namespace framecache::guards

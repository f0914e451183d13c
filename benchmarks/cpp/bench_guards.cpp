// Microbenchmarks of single leaf guards and accessors, in ns per check, with
// one embedded interpreter. Leaves are called through LeafGuard* as a tree
// node calls them; accessors are timed as a root's whole check() of one
// accessor and one TYPE_MATCH, next to the same root with no guards (the
// fixed cost of a check) so that the accessor's share can be read off.
#include <benchmark/benchmark.h>
#include <pybind11/embed.h>

#include <memory>
#include <vector>

#include "framecache/guards/accessors_attr.h"
#include "framecache/guards/accessors_frame.h"
#include "framecache/guards/accessors_items.h"
#include "framecache/guards/leaf_guards_identity.h"
#include "framecache/guards/leaf_guards_value.h"
#include "framecache/guards/root_guard_manager.h"

namespace py = pybind11;
using namespace framecache;
using namespace framecache::guards;

namespace {

// An interned str, as the names of a frame, a module or an attribute are.
py::str interned(const char* s) {
  return py::reinterpret_steal<py::str>(PyUnicode_InternFromString(s));
}

// Times leaf->check(value) (both borrowed for the run), through a LeafGuard*
// the compiler cannot see through, so the call stays virtual as in a tree.
void run_leaf(benchmark::State& state, LeafGuard& leaf, PyObject* value, bool expect) {
  LeafGuard* guard = &leaf;
  benchmark::DoNotOptimize(guard);
  if (guard->check(value) != expect) {
    state.SkipWithError("the guard did not give the expected answer");
    return;
  }
  for (auto _ : state) {
    bool ok = guard->check(value);
    benchmark::DoNotOptimize(ok);
  }
}

void BM_TypeMatch_int(benchmark::State& state) {
  py::int_ v(12345);
  TypeMatch g(reinterpret_cast<PyObject*>(&PyLong_Type));
  run_leaf(state, g, v.ptr(), true);
}
BENCHMARK(BM_TypeMatch_int);

void BM_TypeMatch_fail(benchmark::State& state) {
  py::str v("abc");
  TypeMatch g(reinterpret_cast<PyObject*>(&PyLong_Type));
  run_leaf(state, g, v.ptr(), false);
}
BENCHMARK(BM_TypeMatch_fail);

void BM_IdMatch(benchmark::State& state) {
  py::list obj;
  IdMatch g(obj.ptr());
  run_leaf(state, g, obj.ptr(), true);
}
BENCHMARK(BM_IdMatch);

void BM_NoneMatch(benchmark::State& state) {
  SingletonMatch g(SingletonMatch::Which::kNone);
  run_leaf(state, g, Py_None, true);
}
BENCHMARK(BM_NoneMatch);

void BM_EqualsMatch_int(benchmark::State& state) {
  py::int_ expected(1 << 20);
  py::int_ value(1 << 20);  // equal, not the same object
  EqualsMatch g(expected.ptr());
  run_leaf(state, g, value.ptr(), true);
}
BENCHMARK(BM_EqualsMatch_int);

void BM_EqualsMatch_str(benchmark::State& state) {
  py::str expected("a moderately long configuration string");
  py::object value = py::str("a moderately long ") + py::str("configuration string");
  EqualsMatch g(expected.ptr());
  run_leaf(state, g, value.ptr(), true);
}
BENCHMARK(BM_EqualsMatch_str);

void BM_EqualsMatch_str_fail(benchmark::State& state) {
  py::str expected("a moderately long configuration string");
  py::str value("a moderately long configuration strinG");
  EqualsMatch g(expected.ptr());
  run_leaf(state, g, value.ptr(), false);
}
BENCHMARK(BM_EqualsMatch_str_fail);

void BM_EqualsMatch_float(benchmark::State& state) {
  py::float_ expected(1e-5);
  py::float_ value(1e-5);
  EqualsMatch g(expected.ptr());
  run_leaf(state, g, value.ptr(), true);
}
BENCHMARK(BM_EqualsMatch_float);

void BM_EqualsMatch_bool(benchmark::State& state) {
  EqualsMatch g(Py_True);
  run_leaf(state, g, Py_True, true);
}
BENCHMARK(BM_EqualsMatch_bool);

// A root, a value to check it against, and the timing loop.
void run_root(benchmark::State& state, RootGuardManager& root, const FrameInputs& in) {
  if (root.check_root(in) != 1) {
    state.SkipWithError("the root did not pass");
    return;
  }
  for (auto _ : state) {
    int rc = root.check_root(in);
    benchmark::DoNotOptimize(rc);
  }
}

// The frame path: fast locals read through the root's slot map.
struct FrameLocals {
  explicit FrameLocals(std::vector<PyObject*> values) : fast(std::move(values)) {
    for (size_t i = 0; i < fast.size(); ++i) slots.push_back(static_cast<int32_t>(i));
    in.fast = fast.data();
    in.slots = slots.data();
    in.nslots = slots.size();
  }
  std::vector<PyObject*> fast;
  std::vector<int32_t> slots;
  FrameInputs in;
};

void BM_Root_empty(benchmark::State& state) {
  RootGuardManager root;
  py::int_ x(3);
  FrameLocals frame({x.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_Root_empty);

void BM_FrameLocal_TypeMatch(benchmark::State& state) {
  RootGuardManager root;
  root.local("x").add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  py::int_ x(3);
  FrameLocals frame({x.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_FrameLocal_TypeMatch);

void BM_FrameLocal_dict_TypeMatch(benchmark::State& state) {
  RootGuardManager root;
  root.local("x").add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  py::dict locals;
  locals[interned("x")] = 3;
  FrameInputs in;
  in.locals = locals.ptr();
  run_root(state, root, in);
}
BENCHMARK(BM_FrameLocal_dict_TypeMatch);

void BM_GlobalsItem_TypeMatch(benchmark::State& state) {
  RootGuardManager root;
  add_global(root, "CONST")
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  py::dict globals;
  for (int i = 0; i < 64; ++i) globals[interned(("name" + std::to_string(i)).c_str())] = i;
  globals[interned("CONST")] = 7;
  FrameInputs in;
  in.globals = globals.ptr();
  run_root(state, root, in);
}
BENCHMARK(BM_GlobalsItem_TypeMatch);

void BM_GetAttr_TypeMatch(benchmark::State& state) {
  py::object ns = py::module_::import("types").attr("SimpleNamespace")();
  ns.attr("weight") = 5;
  RootGuardManager root;
  add_attr(root.local("self"), "weight")
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  FrameLocals frame({ns.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_GetAttr_TypeMatch);

// A class defined in a fresh namespace, and one instance of it (made with no arguments).
py::object instance_of(const char* source, const char* cls) {
  py::dict ns;
  ns["__builtins__"] = py::module_::import("builtins");
  py::exec(source, ns);
  return ns[cls]();
}

// A plain class instance: the attribute is read from the instance's values
// (InstanceAttrCache), as for most objects of a model.
void BM_GetAttr_plain_TypeMatch(benchmark::State& state) {
  py::object obj = instance_of(
      "class Layer:\n"
      "    def __init__(self):\n"
      "        self.training = False\n"
      "        self.weight = 5\n",
      "Layer");
  RootGuardManager root;
  add_attr(root.local("self"), "weight")
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  FrameLocals frame({obj.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_GetAttr_plain_TypeMatch);

// A class with __getattr__ (like torch.nn.Module): an instance value is still
// read directly, since the generic lookup runs first.
void BM_GetAttr_getattr_class_TypeMatch(benchmark::State& state) {
  py::object obj = instance_of(
      "class Module:\n"
      "    def __init__(self):\n"
      "        self.weight = 5\n"
      "    def __getattr__(self, name):\n"
      "        raise AttributeError(name)\n",
      "Module");
  RootGuardManager root;
  add_attr(root.local("self"), "weight")
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  FrameLocals frame({obj.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_GetAttr_getattr_class_TypeMatch);

// __slots__: a data descriptor, so the generic PyObject_GetAttr path.
void BM_GetAttr_slots_TypeMatch(benchmark::State& state) {
  py::object obj = instance_of(
      "class Slotted:\n"
      "    __slots__ = ('weight',)\n"
      "    def __init__(self):\n"
      "        self.weight = 5\n",
      "Slotted");
  RootGuardManager root;
  add_attr(root.local("self"), "weight")
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  FrameLocals frame({obj.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_GetAttr_slots_TypeMatch);

void BM_DictItem_TypeMatch(benchmark::State& state) {
  py::dict cfg;
  py::str key = interned("mode");
  cfg[key] = "fast";
  cfg[interned("depth")] = 3;
  RootGuardManager root;
  add_dict_item(root.local("cfg"), key.ptr())
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyUnicode_Type)));
  FrameLocals frame({cfg.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_DictItem_TypeMatch);

void BM_ListItem_TypeMatch(benchmark::State& state) {
  py::list layers;
  for (int i = 0; i < 8; ++i) layers.append(i);
  RootGuardManager root;
  add_list_item(root.local("layers"), 5)
      .add_leaf(std::make_unique<TypeMatch>(reinterpret_cast<PyObject*>(&PyLong_Type)));
  FrameLocals frame({layers.ptr()});
  run_root(state, root, frame.in);
}
BENCHMARK(BM_ListItem_TypeMatch);

}  // namespace

int main(int argc, char** argv) {
  py::scoped_interpreter interpreter;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

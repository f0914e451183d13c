// Guard exports (root_guard_manager.h): a passing check hands each exported
// value on once, moved into the slots the caller names; a failed check, an
// overlapping check or a later check leave nothing to take.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "framecache/guards/accessors_items.h"
#include "framecache/guards/root_guard_manager.h"
#include "support.h"

namespace framecache::guards {
namespace {

namespace py = pybind11;

// A leaf that passes when `pass`, running `during` first (Python a guard may run).
class ExportLeaf final : public LeafGuard {
 public:
  bool check(PyObject*) override {
    if (during) during();
    return pass;
  }
  std::string explain(PyObject*) override { return "scripted leaf said no"; }
  std::string describe() const override { return "SCRIPTED"; }
  const char* kind() const override { return "SCRIPTED"; }
  bool pass = true;
  std::function<void()> during;
};

struct ExportTree {
  RootGuardManager root;
  ExportLeaf* leaf = nullptr;  // on cfg['b']
};

// cfg['a'] is export 0 and cfg['b'] export 1, cfg a DICT_VERSION node.
std::unique_ptr<ExportTree> make_export_tree() {
  auto t = std::make_unique<ExportTree>();
  GuardManager& cfg = t->root.local("cfg");
  cfg.enable_dict_version();
  py::str a("a"), b("b");
  add_dict_item(cfg, a.ptr()).set_export(0);
  GuardManager& nb = add_dict_item(cfg, b.ptr());
  nb.set_export(1);
  t->leaf = static_cast<ExportLeaf*>(&nb.add_leaf(std::make_unique<ExportLeaf>()));
  return t;
}

int check_exports(ExportTree& t, const py::dict& d) {
  py::dict locals;
  locals["cfg"] = d;
  FrameInputs in;
  in.locals = locals.ptr();
  return t.root.check_root(in);
}

TEST(GuardExports, APassingCheckHandsEachValueOnOnce) {
  auto t = make_export_tree();
  py::dict d;
  d["a"] = py::int_(1);
  d["b"] = py::list();
  EXPECT_EQ(t->root.num_exports(), 2u);
  for (int round = 0; round < 3; ++round) {  // the memo never skips an export
    ASSERT_EQ(check_exports(*t, d), 1);
    const uint64_t ticket = t->root.export_ticket();
    ASSERT_NE(ticket, 0u);
    PyObject* dest[3] = {nullptr, nullptr, nullptr};
    const int32_t index[2] = {2, 0};
    ASSERT_TRUE(t->root.move_exports(ticket, dest, index));
    EXPECT_EQ(dest[2], py::object(d["a"]).ptr());
    EXPECT_EQ(dest[0], py::object(d["b"]).ptr());
    EXPECT_EQ(dest[1], nullptr);
    Py_DECREF(dest[0]);
    Py_DECREF(dest[2]);
    PyObject* again[3] = {nullptr, nullptr, nullptr};
    EXPECT_FALSE(t->root.move_exports(ticket, again, index)) << "moved once only";
  }
}

TEST(GuardExports, AFailedOrLaterCheckLeavesNothingToTake) {
  auto t = make_export_tree();
  py::dict d;
  d["a"] = py::int_(1);
  d["b"] = py::list();
  ASSERT_EQ(check_exports(*t, d), 1);
  const uint64_t first = t->root.export_ticket();
  ASSERT_EQ(check_exports(*t, d), 1);  // a later check: the first ticket is stale
  PyObject* dest[2] = {nullptr, nullptr};
  const int32_t index[2] = {0, 1};
  EXPECT_FALSE(t->root.move_exports(first, dest, index));
  t->leaf->pass = false;
  EXPECT_EQ(check_exports(*t, d), 0);
  EXPECT_EQ(t->root.export_ticket(), 0u);
  EXPECT_FALSE(t->root.move_exports(t->root.export_ticket(), dest, index));
  EXPECT_EQ(dest[0], nullptr);
}

TEST(GuardExports, ATakenDestinationRefusesTheMove) {
  auto t = make_export_tree();
  py::dict d;
  d["a"] = py::int_(1);
  d["b"] = py::list();
  ASSERT_EQ(check_exports(*t, d), 1);
  PyObject* dest[2] = {Py_None, nullptr};
  const int32_t index[2] = {0, 1};
  EXPECT_FALSE(t->root.move_exports(t->root.export_ticket(), dest, index));
  EXPECT_EQ(dest[1], nullptr) << "nothing moved";
  t->root.release_exports();
}

TEST(GuardExports, ACheckOverlappedByAnotherGetsNoTicket) {
  auto t = make_export_tree();
  py::dict d;
  d["a"] = py::int_(1);
  d["b"] = py::list();
  bool nested = false;
  t->leaf->during = [&] {
    if (nested) return;
    nested = true;
    EXPECT_EQ(check_exports(*t, d), 1);  // the same tree, inside a guard of the outer check
    EXPECT_EQ(t->root.export_ticket(), 0u) << "the inner check overlapped the outer";
  };
  ASSERT_EQ(check_exports(*t, d), 1);
  EXPECT_EQ(t->root.export_ticket(), 0u) << "another check ran during the outer one";
  t->leaf->during = nullptr;
  ASSERT_EQ(check_exports(*t, d), 1);
  EXPECT_NE(t->root.export_ticket(), 0u);
  t->root.release_exports();
}

TEST(GuardExports, ASlotIsOneNodesAndTheRootHasNone) {
  RootGuardManager root;
  py::str a("a"), b("b");
  GuardManager& cfg = root.local("cfg");
  add_dict_item(cfg, a.ptr()).set_export(0);
  EXPECT_THROW(add_dict_item(cfg, b.ptr()).set_export(0), std::invalid_argument);
  EXPECT_THROW(root.set_export(1), std::invalid_argument);
  EXPECT_THROW(add_dict_item(cfg, b.ptr()).set_export(-1), std::invalid_argument);
}

}  // namespace
}  // namespace framecache::guards

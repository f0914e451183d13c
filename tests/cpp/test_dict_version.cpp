// DICT_VERSION's node-level memo (dict_version.cpp): a dict node that passed
// over an unchanged dict skips its memoised items at once and reruns only the
// items it could not memoise; anything that changes the dict, the tree, or a
// rerun's answer brings the full walk back.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framecache/guards/accessors_items.h"
#include "framecache/guards/root_guard_manager.h"
#include "support.h"

namespace framecache::guards {
namespace {

namespace py = pybind11;

// A leaf that counts its runs and passes; `value_only` says whether it claims
// to be a function of its value alone (so that an immutable item under it may
// be memoised).
class CountingLeaf final : public LeafGuard {
 public:
  explicit CountingLeaf(bool value_only) : value_only_(value_only) {}
  bool check(PyObject*) override {
    ++runs;
    if (during) during();
    return pass;
  }
  std::string explain(PyObject*) override { return "counting leaf said no"; }
  std::string describe() const override { return "COUNTING"; }
  const char* kind() const override { return "COUNTING"; }
  bool depends_only_on_value() const override { return value_only_; }
  int runs = 0;
  bool pass = true;
  std::function<void()> during;

 private:
  bool value_only_;
};

CountingLeaf& add_counting(GuardManager& node, bool value_only) {
  return static_cast<CountingLeaf&>(node.add_leaf(std::make_unique<CountingLeaf>(value_only)));
}

GuardManager& item(GuardManager& node, const char* key) {
  py::str k(key);
  return add_dict_item(node, k.ptr());
}

struct Tree {
  RootGuardManager root;
  GuardManager* cfg = nullptr;
  std::vector<CountingLeaf*> ints;
  CountingLeaf* list = nullptr;
};

// cfg: a DICT_VERSION node over n int items (value-only leaves) and one list item.
std::unique_ptr<Tree> make_tree(int n) {
  auto t = std::make_unique<Tree>();
  t->cfg = &t->root.local("cfg");
  t->cfg->enable_dict_version();
  for (int i = 0; i < n; ++i) {
    t->ints.push_back(&add_counting(item(*t->cfg, ("a" + std::to_string(i)).c_str()), true));
  }
  t->list = &add_counting(item(*t->cfg, "layers"), true);
  return t;
}

py::dict make_dict(int n) {
  py::dict d;
  for (int i = 0; i < n; ++i) d[py::str("a" + std::to_string(i))] = py::int_(i);
  d["layers"] = py::list();
  return d;
}

int check(Tree& t, const py::dict& d) {
  py::dict locals;
  locals["cfg"] = d;
  FrameInputs in;
  in.locals = locals.ptr();
  return t.root.check_root(in);
}

int total_int_runs(const Tree& t) {
  int n = 0;
  for (const CountingLeaf* l : t.ints) n += l->runs;
  return n;
}

TEST(DictVersionMemo, SkipsImmutableItemsAtOnceAndRerunsMutableOnes) {
  auto t = make_tree(12);
  py::dict d = make_dict(12);
  EXPECT_EQ(t->cfg->dict_version_reruns(), -1);
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(total_int_runs(*t), 12);
  EXPECT_EQ(t->list->runs, 1);
  EXPECT_EQ(t->cfg->dict_version_reruns(), 1);
  for (int k = 2; k <= 5; ++k) {
    ASSERT_EQ(check(*t, d), 1);
    EXPECT_EQ(total_int_runs(*t), 12) << "the int items are skipped";
    EXPECT_EQ(t->list->runs, k) << "the list item runs every time";
  }
  // A changed dict (storing the very same object would not change it): walked
  // in full, then memoised again.
  d["unrelated"] = py::int_(7);
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(total_int_runs(*t), 24);
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(total_int_runs(*t), 24);
  // Another dict with the same contents is another dict: walked in full.
  py::dict copy = make_dict(12);
  ASSERT_EQ(check(*t, copy), 1);
  EXPECT_EQ(total_int_runs(*t), 36);
}

TEST(DictVersionMemo, AFailingRerunFailsAndDropsTheMemo) {
  auto t = make_tree(3);
  py::dict d = make_dict(3);
  ASSERT_EQ(check(*t, d), 1);
  ASSERT_EQ(check(*t, d), 1);
  t->list->pass = false;
  EXPECT_EQ(check(*t, d), 0);
  EXPECT_EQ(t->cfg->dict_version_reruns(), -1);
  t->list->pass = true;
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(t->cfg->dict_version_reruns(), 1);
}

TEST(DictVersionMemo, ARerunThatChangesTheDictBringsTheFullWalkBack) {
  auto t = make_tree(3);
  py::dict d = make_dict(3);
  ASSERT_EQ(check(*t, d), 1);
  const int before = total_int_runs(*t);
  // The rerun (the list item's leaf) stores into the dict: the memo's premise
  // no longer holds, so every item is checked again in the same pass.
  t->list->during = [&] { d["tick"] = py::int_(1); };
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(total_int_runs(*t), before + 3);
  t->list->during = nullptr;
  EXPECT_EQ(t->cfg->dict_version_reruns(), -1) << "the dict changed during the pass";
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(t->cfg->dict_version_reruns(), 1);
}

TEST(DictVersionMemo, AddingAGuardDropsTheMemo) {
  auto t = make_tree(2);
  py::dict d = make_dict(2);
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(t->cfg->dict_version_reruns(), 1);
  CountingLeaf& extra = add_counting(item(*t->cfg, "a0"), true);
  EXPECT_EQ(t->cfg->dict_version_reruns(), -1);
  ASSERT_EQ(check(*t, d), 1);
  EXPECT_EQ(extra.runs, 1);
}

TEST(DictVersionMemo, ItemsWhoseGuardsReadMoreThanTheirValueAlwaysRun) {
  RootGuardManager root;
  GuardManager& cfg = root.local("cfg");
  cfg.enable_dict_version();
  CountingLeaf& pure = add_counting(item(cfg, "a"), true);
  CountingLeaf& ambient = add_counting(item(cfg, "b"), false);
  py::dict d;
  d["a"] = 1;
  d["b"] = 2;
  py::dict locals;
  locals["cfg"] = d;
  FrameInputs in;
  in.locals = locals.ptr();
  for (int k = 0; k < 4; ++k) ASSERT_EQ(root.check_root(in), 1);
  EXPECT_EQ(pure.runs, 1);
  EXPECT_EQ(ambient.runs, 4);
  EXPECT_EQ(cfg.dict_version_reruns(), 1);
}

}  // namespace
}  // namespace framecache::guards

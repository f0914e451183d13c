// Builder methods for the relational guards OBJECT_ALIASING and
// NO_TENSOR_ALIASING, on the root (they span several nodes of one tree).
#include <vector>

#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_relational.h"
#include "framecache/guards/root_guard_manager.h"

namespace framecache {

namespace {

using guards::GuardManager;
using guards::RootGuardManager;

// The nodes of `root` that `args` name: each a non-root node of this tree,
// none twice.
std::vector<GuardManager*> member_nodes(RootGuardManager& root, const std::string& method,
                                        const std::vector<py::handle>& args) {
  std::vector<GuardManager*> nodes;
  for (const py::handle& h : args) {
    if (!py::isinstance<GuardManager>(h)) {
      throw py::type_error(method + " expects GuardManager nodes (e.g. root.local('x')), got " +
                           Py_TYPE(h.ptr())->tp_name);
    }
    GuardManager* node = &h.cast<GuardManager&>();
    if (&node->root() != &root) {
      throw py::value_error(method + " got the node " + node->source() +
                            " of another guard tree; use nodes of this root");
    }
    if (node == static_cast<GuardManager*>(&root)) {
      throw py::value_error(method + " expects nodes below the root, got the root itself");
    }
    for (GuardManager* other : nodes) {
      if (other == node) {
        throw py::value_error(method + " got the node " + node->source() + " twice");
      }
    }
    nodes.push_back(node);
  }
  return nodes;
}

// Adds one member leaf per node and registers the relation with the root.
// While the tree is being checked the first add_leaf() throws, before
// anything was added.
void install(RootGuardManager& root, const std::shared_ptr<guards::Relation>& relation,
             const std::vector<GuardManager*>& nodes) {
  guards::RelationalGuard* first = nullptr;
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto member = std::make_unique<guards::RelationMember>(relation, i);
    if (first == nullptr) first = member.get();
    nodes[i]->add_leaf(std::move(member));
  }
  root.register_relational(first);
}

std::vector<std::string> sources_of(const std::vector<GuardManager*>& nodes) {
  std::vector<std::string> out;
  for (const GuardManager* n : nodes) out.push_back(n->source());
  return out;
}

}  // namespace

// `cls` (GuardManager) is unused: these methods belong to the root, whose
// class every root inherits from.
void bind_leaf_guards_relational(GuardManagerClass&) {
  auto root_cls = py::reinterpret_borrow<py::class_<RootGuardManager, GuardManager>>(
      py::type::of<RootGuardManager>());
  root_cls
      .def("object_aliasing",
           [](RootGuardManager& root, py::handle a, py::handle b) -> RootGuardManager& {
             auto nodes = member_nodes(root, "object_aliasing()", {a, b});
             install(root, std::make_shared<guards::ObjectAliasing>(root, sources_of(nodes)), nodes);
             return root;
           },
           py::arg("node_a"), py::arg("node_b"), py::return_value_policy::reference,
           "OBJECT_ALIASING: the values of the two nodes are the same object.")
      .def("no_tensor_aliasing",
           [](RootGuardManager& root, py::handle nodes_arg) -> RootGuardManager& {
             const std::string method = "no_tensor_aliasing()";
             if (!py::isinstance<py::list>(nodes_arg) && !py::isinstance<py::tuple>(nodes_arg)) {
               throw py::type_error(method + " expects a list or tuple of nodes, got " +
                                    Py_TYPE(nodes_arg.ptr())->tp_name);
             }
             std::vector<py::object> held;
             for (py::handle h : nodes_arg) held.push_back(py::reinterpret_borrow<py::object>(h));
             if (held.size() < 2) {
               throw py::value_error(method + " expects at least two nodes, got " +
                                     std::to_string(held.size()));
             }
             std::vector<py::handle> handles(held.begin(), held.end());
             auto nodes = member_nodes(root, method, handles);
             install(root, std::make_shared<guards::NoTensorAliasing>(root, sources_of(nodes)),
                     nodes);
             return root;
           },
           py::arg("nodes"), py::return_value_policy::reference,
           "NO_TENSOR_ALIASING: the values of the nodes are pairwise distinct objects.");
}

}  // namespace framecache

// DICT_VERSION: a dict node that does not recheck items it has already seen.
//
// CPython 3.11 gives every dict a version tag (ma_version_tag, PEP 509) drawn
// from one global counter: a new dict gets a fresh tag, and every change to a
// dict's contents gives it a fresh tag. Equal tags therefore mean "the same
// dict object, unchanged": each key maps to the very object it mapped to.
//
// A node marked with dict_version() uses that for its dict_item() accessors.
// When an item's subtree passes, the item is an immutable value (ints, strs,
// tuples of those, ...; is_immutable_value) and every leaf under it depends on
// its value alone (LeafGuard::depends_only_on_value), the accessor remembers
// the dict's tag. Later checks that find the same tag skip that subtree: it
// would see the same object and so give the same answer. A mutable item (a
// list, a tensor, a module) is checked every time, since it can change without
// its dict changing. Leaves on the dict node itself always run.
//
// The tag is recorded when a check passes rather than when the guard is built:
// a tree built on an example it does not pass must never be skipped into a
// pass. Adding any guard to the tree invalidates every remembered tag (the
// root's structure version), and a dict changed while its item was being
// checked (by Python a guard ran) is not remembered. Each accessor keeps its
// own tag, so checks that overlap in several threads cannot mix them up.
//
// A whole node at once: when a pass over a DICT_VERSION node succeeds and the
// dict kept one tag throughout, the node remembers that tag and the accessors
// it could not memoise (mutable items, tensors above all: a tensor's sizes,
// dtype or requires_grad change in place without its dict changing, so its
// TENSOR_MATCH runs on every check). The next check that finds the same tag
// runs only those, then rereads the tag: if a rerun changed the dict (it ran
// Python), the node is walked in full. A module tree guarded through its
// dicts (__dict__, _parameters, _modules) thus costs, per unchanged layer, a
// few tag reads and its tensors' reads. Only the tree's sole checker uses or
// records the node memo (RootGuardManager::active_checks() == 1).
//
// The node's own leaves run on every check, except when the memo holds and
// they all read only the dict's contents (DICT_LENGTH, LENGTH_CHECK, TYPE_MATCH,
// ID_MATCH, MAPPING_KEYS_MATCH: the tag of one exact dict changes with any key)
// and its keys are constants: a module's _parameters keys are then not compared
// again. If a rerun changes the dict, the node is walked in full, leaves first.
//
// Dict items: among those reruns, an item that is itself an exact dict or an
// OrderedDict (a module's hook dicts, an empty _buffers or _modules), whose
// node has no accessors and only leaves that read its contents (DICT_LENGTH,
// LENGTH_CHECK, TYPE_MATCH, ID_MATCH; MAPPING_KEYS_MATCH only for an exact
// dict, since OrderedDict.move_to_end reorders keys under one tag), and whose
// keys are constants, is remembered with its own tag when it passes. While the
// node's dict keeps its tag it holds that very item, and while the item's tag
// is unchanged so are its contents: the rerun is a tag compare. The node's tag
// is reread before each such item, in case an earlier rerun ran Python that
// changed the dict and released the item. Every other rerun of a dict item
// checks the item the last full pass saw (held while its subtree runs), without
// looking its key up again. A module costs, per unchanged layer, its tensors'
// reads and a few tag reads.
//
// 3.12 deprecates ma_version_tag in favour of dict watchers (dict_watch.h);
// 3.13 instance dicts that share an object's inline values get no tag, and
// are walked every time (cpython.h).
#pragma once

#include <Python.h>

namespace framecache::guards {

// True if `value` (borrowed) is an exact int, float, complex, bool, str,
// bytes, range, None or Ellipsis, or an exact tuple or frozenset of those:
// objects that cannot change and whose attributes read no mutable state.
bool is_immutable_value(PyObject* value);

}  // namespace framecache::guards
